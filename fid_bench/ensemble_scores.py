"""Ensembles of finished runs: their scores combined on the rows they share, and a predictor that
runs the members.

A run's ``predictions.csv`` holds its validation rows next to its test rows (``split``). Members
are aligned by ``(split, id)`` with ``member_matrix``; their test rows must be the same rows with
the same labels (else one ``FidBenchError`` line), validation rows are those all members share.

Methods (``Combiner``):

* ``mean`` -- the mean of the members' scores;
* ``rank`` -- the mean of each member's score turned into its position among *that member's
  validation scores* (the mid-rank empirical CDF, in [0, 1]): members on different scales count
  alike. The reference is the validation rows, never the test rows, so an image's ensemble score
  does not depend on which other images are scored with it, and ``predict`` gives it the same value;
* ``stack`` -- a logistic regression on the members' log-odds, fitted on the validation rows only
  (their labels; never a test label). The ensemble's own validation scores are cross-fitted
  (``STACK_FOLDS`` folds), so the threshold chosen on them is not chosen on the rows the combiner
  was fitted on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fid_bench.contract import CONTENT_HASH, Predictor
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.paired import differing_content, require_content_hashes

log = logging.getLogger(__name__)

METHODS = ("mean", "rank", "stack")
#: folds of the cross-fitted validation scores of a stacked ensemble
STACK_FOLDS = 5
#: scores are clipped to [EPS, 1 - EPS] before taking log-odds
EPS = 1e-6


def member_matrix(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Members' scores side by side: ``id``, ``label``, ``split``, ``group``, ``sha1``, then one column
    per member.

    Test rows must be the same ids with the same labels and the same images (content hashes) in every
    member; validation rows are kept where every member has them (how many were dropped is logged)
    and must show the same images too. Within one member an id
    may appear only once per split (a cross-validated run scores rows once per fold: refused).
    """
    if len(frames) < 2:
        raise FidBenchError(f"an ensemble needs at least two members, got {len(frames)}")
    merged: pd.DataFrame | None = None
    for name, frame in frames.items():
        missing = [c for c in ("id", "label", "score", "split") if c not in frame.columns]
        if missing:
            raise FidBenchError(f"member {name}: scores lack column(s) {missing}")
        part = frame[frame["split"].isin(("val", "test"))].copy()
        part["id"] = part["id"].astype(str)
        dup = part.duplicated(["split", "id"])
        if dup.any():
            raise FidBenchError(
                f"member {name}: id {part.loc[dup, 'id'].iloc[0]!r} appears more than once in split "
                f"{part.loc[dup, 'split'].iloc[0]!r} (cross-validated runs cannot be ensembled; use hold-out runs)"
            )
        require_content_hashes(part, name)
        if "group" not in part.columns:
            part["group"] = ""
        part[CONTENT_HASH] = part[CONTENT_HASH].astype(str)
        part = part[["id", "split", "label", "group", CONTENT_HASH, "score"]].rename(
            columns={"score": name, "label": f"label:{name}", CONTENT_HASH: f"{CONTENT_HASH}:{name}"}
        )
        if merged is None:
            merged = part
            first = name
            continue
        test_a = set(merged.loc[merged["split"] == "test", "id"])
        test_b = set(part.loc[part["split"] == "test", "id"])
        if test_a != test_b:
            only = sorted(test_a ^ test_b)
            raise FidBenchError(
                f"members {first} and {name} were not scored on the same test rows "
                f"({len(test_a - test_b)} id(s) only in the first, {len(test_b - test_a)} only in {name}, "
                f"e.g. {only[0]!r})"
            )
        n_val_before = int((merged["split"] == "val").sum())
        merged = merged.merge(part.drop(columns="group"), on=["split", "id"], how="inner", sort=False)
        differ = merged[f"label:{first}"].astype(int) != merged[f"label:{name}"].astype(int)
        if differ.any():
            raise FidBenchError(
                f"members {first} and {name} disagree on the label of {int(differ.sum())} row(s), "
                f"e.g. {merged.loc[differ, 'id'].iloc[0]!r}"
            )
        other = differing_content(merged, f"{CONTENT_HASH}:{first}", f"{CONTENT_HASH}:{name}")
        if other.any():
            per_split = merged.loc[other, "split"].value_counts()
            raise FidBenchError(
                f"members {first} and {name} scored different images under the same ids: "
                + ", ".join(f"{int(n)} {split} row(s)" for split, n in per_split.items())
                + f" differ in content ({CONTENT_HASH}), e.g. {merged.loc[other, 'id'].iloc[0]!r}"
            )
        merged = merged.drop(columns=[f"label:{name}", f"{CONTENT_HASH}:{name}"])
        n_val = int((merged["split"] == "val").sum())
        if n_val < n_val_before:
            log.warning(
                "ensemble: %d of %d validation rows are not scored by member %s; using the %d all share",
                n_val_before - n_val,
                n_val_before,
                name,
                n_val,
            )
    assert merged is not None
    merged = merged.rename(columns={f"label:{first}": "label", f"{CONTENT_HASH}:{first}": CONTENT_HASH})
    names = list(frames)
    return merged[["id", "label", "split", "group", CONTENT_HASH, *names]].reset_index(drop=True)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _ecdf(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank position of each value among ``reference`` (ties count one half), in [0, 1]."""
    below = np.searchsorted(reference, values, side="left")
    upto = np.searchsorted(reference, values, side="right")
    return (below + upto) / (2.0 * reference.size)


class Combiner:
    """Turns members' scores (a ``[n, k]`` matrix, one column per member) into one score per row."""

    def __init__(self, method: str, *, seed: int = 0) -> None:
        if method not in METHODS:
            raise FidBenchError(f"ensemble method must be one of {list(METHODS)}, got {method!r}")
        self.method = method
        self.seed = int(seed)
        self.reference_: list[np.ndarray] | None = None
        self.model_ = None

    def fit(self, val_scores: np.ndarray, val_labels: np.ndarray) -> Combiner:
        """Learn what the method needs from validation rows only (mean: nothing)."""
        X = self._check(val_scores)
        y = np.asarray(val_labels)
        if self.method == "rank":
            if len(X) == 0:
                raise FidBenchError(
                    "ensemble method rank needs the members' validation scores; none are shared"
                )
            self.reference_ = [np.sort(X[:, j]) for j in range(X.shape[1])]
        elif self.method == "stack":
            self.model_ = self._stack_model().fit(_logit(X), self._stack_labels(y))
        return self

    def _stack_labels(self, y: np.ndarray) -> np.ndarray:
        if y.size == 0 or not np.isin(y, (0, 1)).all() or np.unique(y).size < 2:
            raise FidBenchError(
                f"ensemble method stack needs labelled validation rows of both classes, got {y.size} row(s) "
                f"with label(s) {sorted(set(np.asarray(y).tolist()))}"
            )
        return y.astype(np.int64)

    @staticmethod
    def _stack_model():
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=1000)

    def _check(self, scores: np.ndarray) -> np.ndarray:
        X = np.asarray(scores, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] < 2:
            raise FidBenchError(
                f"ensemble: expected a [rows, members >= 2] score matrix, got shape {X.shape}"
            )
        if not np.isfinite(X).all() or (X.size and (X.min() < 0 or X.max() > 1)):
            raise FidBenchError("ensemble: member scores must be probabilities in [0, 1]")
        return X

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """The ensemble's score of each row."""
        X = self._check(scores)
        if self.method == "mean":
            return X.mean(axis=1)
        if self.method == "rank":
            if self.reference_ is None or len(self.reference_) != X.shape[1]:
                raise FidBenchError("ensemble method rank: fit() on validation scores first")
            return np.mean([_ecdf(ref, X[:, j]) for j, ref in enumerate(self.reference_)], axis=0)
        if self.model_ is None:
            raise FidBenchError("ensemble method stack: fit() on validation scores first")
        return self.model_.predict_proba(_logit(X))[:, 1]

    def cross_fitted(self, val_scores: np.ndarray, val_labels: np.ndarray) -> np.ndarray:
        """Validation rows scored without being fitted on (stack: out-of-fold; rank: leave-self-in ECDF)."""
        X = self._check(val_scores)
        if self.method != "stack":
            return self.transform(X)
        from sklearn.model_selection import StratifiedKFold

        y = self._stack_labels(np.asarray(val_labels))
        folds = min(STACK_FOLDS, int(np.bincount(y).min()))
        if folds < 2:
            log.warning("ensemble stack: too few validation rows of one class to cross-fit; in-sample scores")
            return self.transform(X)
        out = np.empty(len(y))
        split = StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(X, y)
        for fit_rows, held in split:
            model = self._stack_model().fit(_logit(X[fit_rows]), y[fit_rows])
            out[held] = model.predict_proba(_logit(X[held]))[:, 1]
        return out

    def describe(self) -> dict[str, float | str]:
        """What the fitted combiner learned (stack: one weight per member and the intercept)."""
        out: dict[str, float | str] = {"method": self.method}
        if self.model_ is not None:
            for j, w in enumerate(self.model_.coef_[0]):
                out[f"weight_{j}"] = float(w)
            out["intercept"] = float(self.model_.intercept_[0])
        return out


def ensemble_scores(
    frames: Mapping[str, pd.DataFrame], method: str, *, seed: int = 0
) -> tuple[pd.DataFrame, Combiner]:
    """The ensemble's scores frame (``SCORE_COLUMNS``, val and test rows) and its fitted combiner.

    The combiner is fitted on the shared validation rows; test rows are only transformed.
    """
    from fid_bench.contract import score_columns

    matrix = member_matrix(frames)
    names = list(frames)
    val = matrix[matrix["split"] == "val"]
    test = matrix[matrix["split"] == "test"]
    combiner = Combiner(method, seed=seed)
    val_X, val_y = val[names].to_numpy(), val["label"].to_numpy()
    combiner.fit(val_X, val_y)
    out = pd.concat(
        [
            val.assign(score=combiner.cross_fitted(val_X, val_y) if len(val) else []),
            test.assign(score=combiner.transform(test[names].to_numpy())),
        ],
        ignore_index=True,
    )
    out["fold"] = 0
    return out[score_columns(out)], combiner


class EnsemblePredictor(Predictor):
    """Runs every member's predictor on the images and combines their scores (picklable).

    ``threshold`` is the one chosen on the ensemble's validation scores; ``prior`` the members'
    mean prior. An image a member cannot read gets that member's prior from it, as in the member.
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        combiner: Combiner,
        *,
        names: Sequence[str] | None = None,
        threshold: float = 0.5,
    ) -> None:
        if len(members) < 2:
            raise FidBenchError(f"an ensemble needs at least two member predictors, got {len(members)}")
        self.members = list(members)
        self.combiner = combiner
        self.names = list(names) if names is not None else [f"member_{i}" for i in range(len(members))]
        self.threshold = float(threshold)
        self.prior = float(np.mean([float(getattr(m, "prior", 0.5)) for m in self.members]))

    def member_scores(self, paths: list[str]) -> np.ndarray:
        """``[len(paths), members]``: each member's score of each image."""
        cols = []
        for name, member in zip(self.names, self.members, strict=True):
            s = np.asarray(member.predict_paths(list(paths)), dtype=np.float64)
            if s.shape != (len(paths),):
                raise FidBenchError(
                    f"ensemble member {name} returned {s.shape[0]} scores for {len(paths)} images"
                )
            cols.append(s)
        return np.column_stack(cols) if cols else np.empty((len(paths), 0))

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        if not paths:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self.combiner.transform(self.member_scores(paths)), dtype=np.float64)
