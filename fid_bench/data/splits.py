"""Train / val / test folds over the labelled rows of a samples table.

Hold-out (``cv_folds`` None, 0 or 1), one fold:
    * the table has labelled "test" rows (e.g. CIFAKE): test = those rows, val = a stratified
      ``val_fraction`` of the "train" rows, train = the rest;
    * otherwise: test = a stratified ``test_fraction`` of the "train" rows, val = a stratified
      ``val_fraction`` of what remains, train = the rest.
K-fold (``cv_folds`` = K >= 2): stratified K folds over the "train" rows; fold k tests on its own
    part and draws val as a stratified ``val_fraction`` of the other K-1 parts. A labelled "test"
    split given by the data set is NOT used in K-fold (every row is tested exactly once on the pool).

Rows sharing a sha1 (exact duplicate images) always land on the same side of every split made here,
so no image is trained on and evaluated at once through our own split; a group with mixed labels
goes where its majority label is stratified. (Leaks already present in a data set's own train/test
split are reported by the audit, not fixed here.) Predict rows are never part of a fold.
Balancing is not done here: it applies to training rows only, later.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)


@dataclass
class Fold:
    """Integer row positions (``table.iloc``) of one fold's parts; labelled rows only, sorted."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = ""  # the held-out group in leave-one-group-out folds


@dataclass(frozen=True)
class FoldPlan:
    """``cv.*``, ``data.val_fraction`` / ``data.test_fraction`` and ``seed``: how rows become folds.

    The one place a job's folds are planned: ``job_folds`` (hold-out, K-fold or leave-one-group-out)
    and ``source_folds`` (leave-one-source-out), with the rule that the two kinds exclude each other.
    """

    folds: int | None
    leave_one_group_out: bool
    leave_one_source_out: bool
    val_fraction: float
    test_fraction: float
    seed: int

    @classmethod
    def of_config(cls, cfg: Any) -> FoldPlan:
        """The plan of a composed config (``cv``, ``data.val_fraction``/``test_fraction``, ``seed``)."""
        cv = cfg.cv
        return cls(
            folds=cv.folds,
            leave_one_group_out=bool(cv.leave_one_group_out),
            leave_one_source_out=bool(cv.get("leave_one_source_out", False)),
            val_fraction=cfg.data.val_fraction,
            test_fraction=cfg.data.test_fraction,
            seed=cfg.seed,
        )

    def job_folds(self, table: pd.DataFrame) -> list[Fold]:
        """Hold-out, K-fold or leave-one-group-out folds, as the plan says."""
        if self.leave_one_group_out:
            if self.folds:
                raise FidBenchError("cv.folds and cv.leave_one_group_out exclude each other; set one of them")
            return leave_one_group_out(
                table, val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed
            )
        return make_folds(
            table,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            cv_folds=self.folds,
            seed=self.seed,
        )

    def source_folds(self, table: pd.DataFrame, folds: list[Fold], *, final: bool) -> list[Fold]:
        """Leave-one-source-out folds when ``cv.leave_one_source_out`` is set, else none.

        A search trial (``final`` False) leaves the first job fold's test rows out of them, so
        selecting by ``loso/*`` never sees the rows the final run is tested on. Fold indices follow
        the job's own ``folds``.
        """
        if not self.leave_one_source_out:
            return []
        if self.leave_one_group_out:
            raise FidBenchError(
                "cv.leave_one_group_out and cv.leave_one_source_out exclude each other; set one of them"
            )
        rows = None if final else np.setdiff1d(np.arange(len(table)), folds[0].test)
        source_folds = leave_one_source_out(table, val_fraction=self.val_fraction, seed=self.seed, rows=rows)
        return [dataclasses.replace(f, index=len(folds) + f.index) for f in source_folds]


def make_folds(
    table: pd.DataFrame,
    *,
    val_fraction: float,
    test_fraction: float,
    cv_folds: int | None,
    seed: int,
) -> list[Fold]:
    """Split the labelled rows of ``table`` into folds (see the module docstring)."""
    val_fraction = _fraction("val_fraction", val_fraction)
    k = _cv_folds(cv_folds)
    split = table["split"].astype(str).to_numpy()
    labels = table["label"].to_numpy()
    labelled = np.isin(split, ("train", "test"))
    bad = labelled & ~np.isin(labels, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FidBenchError(
            f"labelled row {table['id'].iloc[row]!r} has label {labels[row]!r}; labels must be 0 or 1"
        )
    labels = labels.astype(np.int64)
    groups = _duplicate_groups(table)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(split == "train")
    given_test = np.flatnonzero(split == "test")
    _require_both_classes(labels[np.flatnonzero(labelled)], "the labelled data")

    if k >= 2:
        if given_test.size:
            log.info("cv.folds=%d: the data set's own test split (%d rows) is not used", k, given_test.size)
        _require_both_classes(labels[pool], "the 'train' rows")
        part = _group_kfold(pool, labels, groups, k, rng)
        folds = []
        for i in range(k):
            val, train = _split_off(pool[part != i], val_fraction, labels, groups, rng, "val")
            folds.append(Fold(i, train, val, pool[part == i]))
    else:
        if given_test.size:
            test = given_test
            val, train = _split_off(pool, val_fraction, labels, groups, rng, "val")
        else:
            test_fraction = _fraction("test_fraction", test_fraction)
            test, rest = _split_off(pool, test_fraction, labels, groups, rng, "test")
            val, train = _split_off(rest, val_fraction, labels, groups, rng, "val")
        folds = [Fold(0, train, val, test)]

    for fold in folds:
        for name in ("train", "val", "test"):
            _require_both_classes(labels[getattr(fold, name)], f"fold {fold.index} {name}")
    return folds


def leave_one_group_out(
    table: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int
) -> list[Fold]:
    """One fold per value of the ``group`` column: train and validate without it, test on it.

    Rows with an empty group (typically real photos, not tied to a generator) are shared: a
    stratified ``test_fraction`` of them joins every test set, so a group made only of generated
    images is still told apart from real ones; the rest can be trained on. The data set's own
    train/test split is not used. Images identical to a test image never stay in train or val.
    """
    val_fraction = _fraction("val_fraction", val_fraction)
    test_fraction = _fraction("test_fraction", test_fraction)
    split = table["split"].astype(str).to_numpy()
    labelled = np.flatnonzero(np.isin(split, ("train", "test")))
    labels = table["label"].to_numpy().astype(np.int64)
    group = table["group"].fillna("").astype(str).to_numpy()
    names = sorted({group[i] for i in labelled} - {""})
    if len(names) < 2:
        raise FidBenchError(
            f"cv.leave_one_group_out needs at least 2 named groups in the data's group column, found {names}"
        )
    dups = _duplicate_groups(table)
    rng = np.random.default_rng(seed)
    shared = labelled[group[labelled] == ""]
    shared_test: list[np.ndarray] = []
    for members in _stratified_groups(shared, labels, dups, rng).values():
        take = round(test_fraction * sum(len(m) for m in members))
        got = 0
        for m in members:
            if got >= take:
                break
            shared_test.append(m)
            got += len(m)
    shared_test_rows = _sorted(shared_test)
    folds = []
    for i, name in enumerate(names):
        test = np.union1d(labelled[group[labelled] == name], shared_test_rows)
        rest = np.setdiff1d(labelled, test)
        rest = rest[~np.isin(dups[rest], dups[test])]  # no copy of a test image trains
        _require_both_classes(labels[test], f"leave-one-group-out test on group {name!r}")
        val, train = _split_off(rest, val_fraction, labels, dups, rng, "val")
        folds.append(Fold(i, train, val, test.astype(np.int64), name=name))
    return folds


def leave_one_source_out(
    table: pd.DataFrame, *, val_fraction: float, seed: int, rows: np.ndarray | None = None
) -> list[Fold]:
    """One fold per source (the ``group`` column of ``data=multi``): train and validate on the other
    sources, test on every row of the held-out one. Unlike ``leave_one_group_out`` nothing is shared:
    each source must hold both classes. ``rows`` limits the folds to those positions (a search keeps
    the final test rows out). Images identical to a test image never stay in train or val.
    """
    val_fraction = _fraction("val_fraction", val_fraction)
    split = table["split"].astype(str).to_numpy()
    labelled = np.flatnonzero(np.isin(split, ("train", "test")))
    if rows is not None:
        labelled = np.intersect1d(labelled, np.asarray(rows, dtype=np.int64))
    labels = table["label"].to_numpy().astype(np.int64)
    group = table["group"].fillna("").astype(str).to_numpy()
    names = sorted({group[i] for i in labelled})
    if len(names) < 2 or "" in names:
        raise FidBenchError(
            "cv.leave_one_source_out needs at least 2 named sources (data=multi with 2+ data.sources), "
            f"found {names or 'none'}"
        )
    dups = _duplicate_groups(table)
    rng = np.random.default_rng(seed)
    folds = []
    for i, name in enumerate(names):
        test = labelled[group[labelled] == name]
        _require_both_classes(labels[test], f"source {name!r}")
        rest = labelled[group[labelled] != name]
        rest = rest[~np.isin(dups[rest], dups[test])]  # no copy of a test image trains
        _require_both_classes(labels[rest], f"the sources other than {name!r}")
        val, train = _split_off(rest, val_fraction, labels, dups, rng, "val")
        folds.append(Fold(i, train, val, test.astype(np.int64), name=name))
    return folds


def _fraction(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise FidBenchError(f"data.{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise FidBenchError(f"data.{name} must be in (0, 1), got {value}")
    return value


def _cv_folds(value: int | None) -> int:
    if value is None:
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number.is_integer() or number < 0:
        raise FidBenchError(f"cv.folds must be null or a whole number >= 0, got {value!r}")
    return int(number)


def _duplicate_groups(table: pd.DataFrame) -> np.ndarray:
    """One group id per row: rows with the same non-empty sha1 share it, every other row is alone."""
    sha1 = table["sha1"].astype(str).to_numpy() if "sha1" in table else np.full(len(table), "")
    codes = pd.factorize(pd.Series(sha1))[0]
    unknown = sha1 == ""
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(int(unknown.sum()))
    return codes


def _require_both_classes(labels: np.ndarray, where: str) -> None:
    present = set(np.unique(labels).tolist())
    if present != {0, 1}:
        if not present:
            raise FidBenchError(f"{where}: no rows (need both real and generated images)")
        only = "real (0)" if present == {0} else "generated (1)"
        raise FidBenchError(f"{where}: only {only} images; need both classes to train and evaluate")


def _stratified_groups(
    rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, rng: np.random.Generator
) -> dict[int, list[np.ndarray]]:
    """Per class, the duplicate groups among ``rows`` (each an array of positions), in random order."""
    by_group: dict[int, list[int]] = {}
    for pos in rows.tolist():
        by_group.setdefault(int(groups[pos]), []).append(pos)
    out: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for members in by_group.values():
        counts = np.bincount(labels[members], minlength=2)
        out[int(np.argmax(counts))].append(np.asarray(members, dtype=np.int64))
    for c in out:
        out[c] = [out[c][i] for i in rng.permutation(len(out[c]))]
    return out


def _split_off(
    rows: np.ndarray,
    fraction: float,
    labels: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Take a stratified, duplicate-aware ``fraction`` of ``rows``: returns (taken, rest), both sorted."""
    taken: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for c, members in _stratified_groups(rows, labels, groups, rng).items():
        n_rows = sum(len(m) for m in members)
        if len(members) < 2:
            raise FidBenchError(
                f"class {c} has {len(members)} distinct image(s) left, too few to split off a {what} part "
                "(need at least 2: add data or lower the number of folds)"
            )
        target = max(1, round(fraction * n_rows))
        got = 0
        for i, m in enumerate(members):
            # keep at least one group for the other side
            if got < target and i < len(members) - 1:
                taken.append(m)
                got += len(m)
            else:
                rest.append(m)
    return _sorted(taken), _sorted(rest)


def _group_kfold(
    rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Fold number per entry of ``rows``: stratified by class, duplicate groups kept in one fold."""
    fold_of = {}
    sizes = np.zeros(k, dtype=np.int64)
    for c, members in _stratified_groups(rows, labels, groups, rng).items():
        if len(members) < k:
            raise FidBenchError(
                f"class {c} has {len(members)} distinct images, fewer than cv.folds={k}: lower cv.folds"
            )
        per_class = np.zeros(k, dtype=np.int64)
        # biggest groups first so the remaining singletons can even the folds out (stable on ties)
        for m in sorted(members, key=len, reverse=True):
            target = int(np.lexsort((np.arange(k), sizes, per_class))[0])
            per_class[target] += len(m)
            sizes[target] += len(m)
            for pos in m.tolist():
                fold_of[pos] = target
    return np.array([fold_of[pos] for pos in rows.tolist()], dtype=np.int64)


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)
