"""Paired comparisons of detectors scored on the same test rows.

Two runs scored on the same images are not independent samples: an image that is hard for one
detector tends to be hard for the other. Comparing their bootstrap intervals side by side ignores
that correlation and calls too many differences insignificant; the tests here use it.

* ``delong_test``: the difference of two ROC-AUCs on the same rows with DeLong, DeLong and
  Clarke-Pearson's (Biometrics, 1988) variance estimate: each AUC is the mean of per-row
  *placement values* (for a generated image, the share of real images it outscores; for a real
  image, the share of generated images that outscore it; ties count one half), and the covariance
  of the two AUCs follows from the covariance of their placement values. Gives the difference,
  its standard error, a two-sided p-value (normal approximation) and the ``1 - alpha`` interval.
* ``paired_bootstrap``: any metric (F1 or accuracy at each run's own threshold, TPR at a fixed
  FPR, ...) on the *same* resamples for both runs, so the difference's interval and p-value
  carry the pairing. Resamples are ``uncertainty.bootstrap_distribution``'s, stratified by label.
* ``holm``: Holm's step-down adjustment of p-values for testing several runs against one, and
  ``tied_with_top``: which runs a leaderboard cannot tell apart from its top run (DeLong against
  the top run, Holm-adjusted, ``p_adjusted >= alpha``).
* ``pair_test_rows``: the test rows two scores frames share, matched by id; refuses, in one line,
  runs whose test rows, labels or images (per-row content hashes, ``sha1``) differ. A data set whose
  images were re-encoded under the same names keeps its ids and labels: only the hashes show it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from fid_bench.contract import CONTENT_HASH
from fid_bench.errors import FidBenchError
from fid_bench.evaluation import metric_registry
from fid_bench.evaluation.uncertainty import bootstrap_distribution

MetricFn = Callable[[np.ndarray, np.ndarray], float]

#: the multiple-comparison correction ``tied_with_top`` applies, as reports should name it
CORRECTION = "Holm"


def _z_quantile(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise FidBenchError(f"alpha must be in (0, 1), got {alpha}")
    from scipy.stats import norm

    return float(norm.ppf(1.0 - alpha / 2.0))


def _two_sided_p(z: float) -> float:
    return float(math.erfc(abs(z) / math.sqrt(2.0)))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]


def placement_values(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values ``(v10, v01)`` of one score vector.

    ``v10[i]``: share of negatives that positive ``i`` outscores (ties one half); ``v01[j]``: share
    of positives that outscore negative ``j``. Both average to the ROC-AUC. Computed from midranks
    (Sun and Xu, IEEE Signal Processing Letters 2014) in ``O(n log n)``.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise FidBenchError(f"DeLong: both classes are needed, got {m} generated and {n} real rows")
    all_ranks = _midranks(np.r_[pos, neg])
    v10 = (all_ranks[:m] - _midranks(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - _midranks(neg)) / m
    return v10, v01


def delong_covariance(y: np.ndarray, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUCs of several score vectors on the same rows and DeLong's covariance matrix of them."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise FidBenchError("DeLong: labels must be a 1-D array of 0 (real) and 1 (generated)")
    v10s, v01s = [], []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        if s.shape != y.shape:
            raise FidBenchError(f"DeLong: {s.shape[0]} scores for {y.shape[0]} labels")
        v10, v01 = placement_values(y, s)
        v10s.append(v10)
        v01s.append(v01)
    v10m, v01m = np.vstack(v10s), np.vstack(v01s)
    m, n = v10m.shape[1], v01m.shape[1]
    aucs = v10m.mean(axis=1)

    def cov(v: np.ndarray) -> np.ndarray:
        # one row has no spread to estimate: its share of the variance is taken as 0
        return np.atleast_2d(np.cov(v, ddof=1)) if v.shape[1] > 1 else np.zeros((len(v), len(v)))

    return aucs, cov(v10m) / m + cov(v01m) / n


@dataclass(frozen=True)
class PairedResult:
    """``metric(a) - metric(b)`` on the same rows, with its interval and two-sided p-value."""

    metric: str
    method: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    se: float = float("nan")

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def delong_test(y: np.ndarray, s_a: np.ndarray, s_b: np.ndarray, alpha: float = 0.05) -> PairedResult:
    """DeLong's test of ``AUC(a) - AUC(b)`` on the same rows (see the module docstring).

    When the two score vectors rank every pair the same way the variance is 0: the difference is
    then 0 and the p-value 1.
    """
    z_crit = _z_quantile(alpha)
    aucs, cov = delong_covariance(y, [s_a, s_b])
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
    else:
        p = _two_sided_p(diff / se)
    return PairedResult(
        metric="roc_auc",
        method="DeLong",
        a=float(aucs[0]),
        b=float(aucs[1]),
        diff=diff,
        ci_low=diff - z_crit * se,
        ci_high=diff + z_crit * se,
        p_value=p,
        n=int(np.asarray(y).size),
        se=se,
    )


def paired_bootstrap(
    y: np.ndarray,
    s_a: np.ndarray,
    s_b: np.ndarray,
    metric_a: MetricFn,
    metric_b: MetricFn | None = None,
    *,
    name: str = "metric",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of ``metric_a(y, s_a) - metric_b(y, s_b)`` (``metric_b`` defaults to ``metric_a``).

    Both distributions are drawn with the same ``seed`` from the same labels, so resample ``k``
    holds the same rows for both runs. The interval is the percentile interval of the
    differences; the p-value is the two-sided mid-p ``2 * min(P(d < 0), P(d > 0)) + P(d = 0)``
    over the resamples (at most 1): thresholded metrics on few rows often differ by exactly 0, and
    counting those resamples on both sides (``2 * min(P(d <= 0), P(d >= 0))``) would double them.
    """
    if not 0.0 < alpha < 1.0:
        raise FidBenchError(f"alpha must be in (0, 1), got {alpha}")
    metric_b = metric_b or metric_a
    y = np.asarray(y)
    s_a, s_b = np.asarray(s_a, dtype=np.float64), np.asarray(s_b, dtype=np.float64)
    if not (y.shape == s_a.shape == s_b.shape) or y.ndim != 1:
        raise FidBenchError(
            f"paired bootstrap: labels and both scores must be 1-D of one length, got "
            f"{y.shape}, {s_a.shape}, {s_b.shape}"
        )
    if y.size == 0 or y.min() == y.max():
        raise FidBenchError("paired bootstrap: both real (0) and generated (1) rows are needed")
    dist_a = bootstrap_distribution(y, s_a, metric_a, n_boot, seed)
    dist_b = bootstrap_distribution(y, s_b, metric_b, n_boot, seed)
    d = dist_a - dist_b
    d = d[~np.isnan(d)]
    a, b = float(metric_a(y, s_a)), float(metric_b(y, s_b))
    if d.size == 0:
        low = high = p = float("nan")
    else:
        low, high = (float(v) for v in np.quantile(d, [alpha / 2, 1 - alpha / 2]))
        p = float(min(1.0, 2.0 * min((d < 0).mean(), (d > 0).mean()) + (d == 0).mean()))
    return PairedResult(
        metric=name,
        method="paired bootstrap",
        a=a,
        b=b,
        diff=a - b,
        ci_low=low,
        ci_high=high,
        p_value=p,
        n=int(y.size),
        se=float(d.std(ddof=1)) if d.size > 1 else float("nan"),
    )


# --------------------------------------------------------------------------- metric functions


def accuracy_at(threshold: float) -> MetricFn:
    """Accuracy of the rule ``score >= threshold`` (batched for the bootstrap)."""

    def accuracy(y: np.ndarray, s: np.ndarray) -> float:
        y = np.asarray(y).astype(bool)
        return float(((np.asarray(s, dtype=np.float64) >= threshold) == y).mean()) if y.size else float("nan")

    def batched(y: np.ndarray, s: np.ndarray, counts: np.ndarray) -> np.ndarray:
        right = (s >= threshold) == y.astype(bool)
        return counts[:, right].sum(axis=1) / counts.sum(axis=1)

    accuracy.batched = batched  # type: ignore[attr-defined]
    accuracy.__name__ = f"accuracy_at_{threshold:g}"
    return accuracy


def tpr_at_fpr_fn(fpr: float) -> MetricFn:
    """``metrics.tpr_at_fpr`` at a fixed ``fpr`` as a bootstrap metric."""
    from fid_bench.evaluation.metrics import tpr_at_fpr

    def tpr(y: np.ndarray, s: np.ndarray) -> float:
        return tpr_at_fpr(y, s, fpr)

    tpr.__name__ = f"tpr_at_fpr_{fpr:g}"
    return tpr


# --------------------------------------------------------------------------- several runs


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN).

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k + 1``, then a running maximum
    keeps the adjusted values in the order of the raw ones, and each is capped at 1. Rejecting
    where the adjusted value is below ``alpha`` controls the family-wise error rate at ``alpha``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    m = order.size
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def tied_with_top(y: np.ndarray, scores: Mapping[str, np.ndarray], alpha: float = 0.05) -> pd.DataFrame:
    """Which runs are not significantly different in ROC-AUC from the best one on the same rows.

    Each run is compared with the top run (highest ROC-AUC) by ``delong_test``; the p-values are
    Holm-adjusted over those comparisons. Columns: ``run``, ``roc_auc``, ``diff_to_top``,
    ``p_value``, ``p_adjusted``, ``tied_with_top`` (the top run itself: True, p-values NaN),
    sorted by ROC-AUC, best first. ``CORRECTION`` names the adjustment for reports.
    """
    if not scores:
        raise FidBenchError("tied_with_top: no runs given")
    names = list(scores)
    aucs, _ = delong_covariance(y, [scores[k] for k in names])
    top = names[int(np.argmax(aucs))]
    rows = []
    for name, auc in zip(names, aucs, strict=True):
        if name == top:
            rows.append((name, float(auc), 0.0, float("nan")))
        else:
            res = delong_test(y, scores[name], scores[top], alpha)
            rows.append((name, float(auc), res.diff, res.p_value))
    table = pd.DataFrame(rows, columns=["run", "roc_auc", "diff_to_top", "p_value"])
    table["p_adjusted"] = holm(table["p_value"].to_numpy())
    table["tied_with_top"] = (table["run"] == top) | (table["p_adjusted"] >= alpha)
    return table.sort_values("roc_auc", ascending=False, kind="mergesort").reset_index(drop=True)


def require_content_hashes(frame: pd.DataFrame, name: str) -> None:
    """One line when ``frame`` carries no per-row content hashes (a run logged before they were)."""
    if CONTENT_HASH not in frame.columns:
        raise FidBenchError(
            f"run {name} logged no per-row content hashes ({CONTENT_HASH} column of predictions.csv; runs "
            "made before fid_bench recorded them), so pairing its rows with another run's cannot check "
            "that both scored the same images; score it again"
        )


def differing_content(merged: pd.DataFrame, a: str, b: str) -> pd.Series:
    """Rows of a merge whose content hash columns ``a`` and ``b`` differ."""
    return merged[a].astype(str) != merged[b].astype(str)


def pair_test_rows(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Test rows of two scores frames matched by id: columns ``id``, ``label``, ``score_a``, ``score_b``.

    Refuses (``FidBenchError``, one line) when either frame repeats an id or carries no content
    hashes, when the two runs were not scored on the same test ids, when they disagree on a label, or
    when an id's content hash differs (the same name, other bytes): a paired test on different rows
    would compare the data, not the detectors. Rows are returned in ``a``'s order.
    """
    frames = []
    for frame, name in ((a, names[0]), (b, names[1])):
        missing = [c for c in ("id", "label", "score") if c not in frame.columns]
        if missing:
            raise FidBenchError(f"run {name}: scores lack column(s) {missing}")
        require_content_hashes(frame, name)
        test = frame[frame["split"] == "test"] if "split" in frame.columns else frame
        ids = test["id"].astype(str)
        if ids.duplicated().any():
            raise FidBenchError(
                f"run {name}: test id {ids[ids.duplicated()].iloc[0]!r} appears more than once "
                "(cross-validated runs score each row once per fold; compare hold-out runs)"
            )
        frames.append(test.assign(id=ids)[["id", "label", "score", CONTENT_HASH]])
    ta, tb = frames
    only_a = set(ta["id"]) - set(tb["id"])
    only_b = set(tb["id"]) - set(ta["id"])
    if only_a or only_b:
        example = sorted(only_a or only_b)[0]
        raise FidBenchError(
            f"runs {names[0]} and {names[1]} were not scored on the same test rows: "
            f"{len(only_a)} id(s) only in {names[0]}, {len(only_b)} only in {names[1]} (e.g. {example!r})"
        )
    merged = ta.merge(tb, on="id", suffixes=("_a", "_b"), validate="one_to_one", sort=False)
    differ = merged["label_a"].astype(int) != merged["label_b"].astype(int)
    if differ.any():
        raise FidBenchError(
            f"runs {names[0]} and {names[1]} disagree on the label of {int(differ.sum())} test row(s), "
            f"e.g. {merged.loc[differ, 'id'].iloc[0]!r}"
        )
    other = differing_content(merged, f"{CONTENT_HASH}_a", f"{CONTENT_HASH}_b")
    if other.any():
        raise FidBenchError(
            f"runs {names[0]} and {names[1]} scored different images under the same ids: "
            f"{int(other.sum())} of {len(merged)} test row(s) differ in content ({CONTENT_HASH}), "
            f"e.g. {merged.loc[other, 'id'].iloc[0]!r}; a paired test needs the same images"
        )
    return pd.DataFrame(
        {
            "id": merged["id"],
            "label": merged["label_a"].astype(int),
            "score_a": merged["score_a"].astype(float),
            "score_b": merged["score_b"].astype(float),
        }
    )


def threshold_comparisons(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, threshold_a: float, threshold_b: float, **kw: Any
) -> list[PairedResult]:
    """F1 and accuracy of each run at its own decision threshold, by the paired bootstrap (``kw``:
    ``n_boot``, ``alpha``, ``seed``)."""
    from fid_bench.evaluation.uncertainty import f1_at

    for name, t in (("A", threshold_a), ("B", threshold_b)):
        if t is None or not math.isfinite(float(t)):
            raise FidBenchError(f"run {name} has no finite decision threshold; F1 and accuracy need one")
    return [
        paired_bootstrap(y, a, b, f1_at(threshold_a), f1_at(threshold_b), name="f1_at_threshold", **kw),
        paired_bootstrap(
            y, a, b, accuracy_at(threshold_a), accuracy_at(threshold_b), name="accuracy_at_threshold", **kw
        ),
    ]


def operating_point_comparisons(y: np.ndarray, a: np.ndarray, b: np.ndarray, **kw: Any) -> list[PairedResult]:
    """TPR at each operating FPR (1 %, 5 %), by the paired bootstrap (``kw`` as above)."""
    from fid_bench.evaluation.metrics import OPERATING_FPRS

    return [
        paired_bootstrap(y, a, b, tpr_at_fpr_fn(fpr), name=name, **kw) for name, fpr in OPERATING_FPRS.items()
    ]


def registered_comparisons(y: np.ndarray, a: np.ndarray, b: np.ndarray, **kw: Any) -> list[PairedResult]:
    """Every metric the registry flags ``paired``, by the paired bootstrap (``kw`` as above)."""
    chosen = metric_registry.names(paired=True)
    if not chosen:
        return []
    from fid_bench.evaluation.metrics import SCORE_FUNCTIONS

    return [paired_bootstrap(y, a, b, SCORE_FUNCTIONS[name], name=name, **kw) for name in chosen]


def compare_scores(
    pairs: pd.DataFrame,
    threshold_a: float | None,
    threshold_b: float | None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[PairedResult]:
    """The comparison of two runs on paired rows (``pair_test_rows``): ROC-AUC by DeLong's test;
    F1 and accuracy (each run at its own validation threshold), TPR at FPR 1 % and 5 % and every
    metric the registry flags ``paired`` by the paired bootstrap.

    ``n_boot=0`` runs DeLong's test only; a threshold of None (a run that logged none) leaves out
    F1 and accuracy, whose comparison needs both.
    """
    if n_boot < 0:
        raise FidBenchError(f"the number of bootstrap resamples must be >= 0, got {n_boot}")
    y = pairs["label"].to_numpy(dtype=np.int64)
    a, b = pairs["score_a"].to_numpy(dtype=np.float64), pairs["score_b"].to_numpy(dtype=np.float64)
    results = [delong_test(y, a, b, alpha)]
    if not n_boot:
        return results
    kw = {"n_boot": n_boot, "alpha": alpha, "seed": seed}
    if threshold_a is not None and threshold_b is not None:
        results += threshold_comparisons(y, a, b, threshold_a, threshold_b, **kw)
    return results + operating_point_comparisons(y, a, b, **kw) + registered_comparisons(y, a, b, **kw)
