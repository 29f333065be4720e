"""Bootstrap confidence intervals for held-out metrics, so close runs can be told apart honestly.

Resampling is stratified: each resample draws ``n_pos`` rows with replacement from the positive
rows and ``n_neg`` from the negative rows, so both classes are always present and ROC-AUC is
always defined. The interval is the percentile interval ``[q(alpha/2), q(1 - alpha/2)]`` of the
metric over the resamples.

Speed: a resample is represented by how many times it drew each row (a counts matrix, a chunk of
resamples at a time), and the metrics that matter (ROC-AUC, F1 at a fixed threshold) are computed
for a whole chunk with a few array operations instead of a Python loop. Any other
``metric_fn(y, s) -> float`` works too, through a plain loop over the same resamples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError
from fid_bench.evaluation import metric_registry

log = logging.getLogger(__name__)

NAN = float("nan")
#: resamples per chunk; fixed so results depend only on (data, n_boot, seed)
CHUNK = 64

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC (ties count one half), the Mann-Whitney statistic; NaN when a class is missing."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_batched(y: np.ndarray, s: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of every resample: row b of ``counts`` says how often each row was drawn."""
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    pos = y[order].astype(bool)
    w = counts[:, order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]  # first row of each run of tied scores
    neg_g = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)
    pos_g = np.add.reduceat(np.where(pos, w, 0.0), starts, axis=1)
    # a positive beats every negative below its score and half of those tied with it
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    wins = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    return wins / (pos_g.sum(axis=1) * neg_g.sum(axis=1))


roc_auc.batched = _auc_batched  # type: ignore[attr-defined]


def f1_at(threshold: float) -> MetricFn:
    """F1 of the rule ``score >= threshold`` (0 when nothing is predicted and nothing is positive)."""

    def f1(y: np.ndarray, s: np.ndarray) -> float:
        y = np.asarray(y).astype(bool)
        pred = np.asarray(s, dtype=np.float64) >= threshold
        tp = int((pred & y).sum())
        den = 2 * tp + int((pred & ~y).sum()) + int((~pred & y).sum())
        return 2 * tp / den if den else 0.0

    def batched(y: np.ndarray, s: np.ndarray, counts: np.ndarray) -> np.ndarray:
        y = y.astype(bool)
        pred = s >= threshold
        tp = counts[:, y & pred].sum(axis=1)
        fp = counts[:, ~y & pred].sum(axis=1)
        fn = counts[:, y & ~pred].sum(axis=1)
        den = 2 * tp + fp + fn
        return np.divide(2.0 * tp, den, out=np.zeros(len(counts)), where=den > 0)

    f1.batched = batched  # type: ignore[attr-defined]
    f1.__name__ = f"f1_at_{threshold:g}"
    return f1


def _resamples(
    y: np.ndarray, n_boot: int, seed: int, stratified: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices [b, n], counts [b, n]) chunk by chunk; the same draws for every metric."""
    rng = np.random.default_rng(seed)
    n = y.size
    pos_rows, neg_rows = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    for start in range(0, n_boot, CHUNK):
        b = min(CHUNK, n_boot - start)
        if stratified:
            idx = np.concatenate(
                [
                    pos_rows[rng.integers(0, pos_rows.size, size=(b, pos_rows.size))],
                    neg_rows[rng.integers(0, neg_rows.size, size=(b, neg_rows.size))],
                ],
                axis=1,
            )
        else:
            idx = rng.integers(0, n, size=(b, n))
        offsets = (np.arange(b) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n)
        yield idx, counts


def bootstrap_distribution(
    y: np.ndarray,
    s: np.ndarray,
    metric_fn: MetricFn,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    stratified: bool = True,
) -> np.ndarray:
    """The metric on each of ``n_boot`` resamples (deterministic for a given ``seed``)."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise FidBenchError(
            f"bootstrap: labels and scores must be 1-D of equal length, got {y.shape}, {s.shape}"
        )
    if n_boot < 1:
        raise FidBenchError(f"bootstrap: n_boot must be >= 1, got {n_boot}")
    batched = getattr(metric_fn, "batched", None)
    out = []
    for idx, counts in _resamples(y, n_boot, seed, stratified):
        if batched is not None:
            out.append(np.asarray(batched(y, s, counts), dtype=np.float64))
        else:
            out.append(np.array([metric_fn(y[row], s[row]) for row in idx], dtype=np.float64))
    return np.concatenate(out)


def bootstrap_ci(
    y: np.ndarray,
    s: np.ndarray,
    metric_fn: MetricFn,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    stratified: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``metric_fn(y, s)``.

    (NaN, NaN) when a class is missing (stratified resampling needs both) or there are no rows.
    """
    if not 0.0 < alpha < 1.0:
        raise FidBenchError(f"bootstrap: alpha must be in (0, 1), got {alpha}")
    y = np.asarray(y)
    n_pos = int((y == 1).sum())
    if y.size == 0 or (stratified and (n_pos == 0 or n_pos == y.size)):
        log.warning("bootstrap: %d positive / %d negative rows; interval is NaN", n_pos, y.size - n_pos)
        return NAN, NAN
    dist = bootstrap_distribution(y, s, metric_fn, n_boot, seed, stratified=stratified)
    dist = dist[~np.isnan(dist)]
    if dist.size == 0:
        return NAN, NAN
    low, high = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_metrics(
    scores: pd.DataFrame,
    threshold: float,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Bootstrap intervals of ROC-AUC and of F1 at ``threshold`` on held-out scores.

    ``scores`` is a scores frame; when it has a ``split`` column only ``split == "test"`` rows are
    used, and unlabelled rows (label -1) are ignored. Keys: ``roc_auc_ci_low``, ``roc_auc_ci_high``,
    ``f1_ci_low``, ``f1_ci_high`` (F1 ones NaN when ``threshold`` is NaN), and ``<name>_ci_low`` /
    ``<name>_ci_high`` of every metric the registry flags ``interval``. Call it per fold with the
    fold's validation-chosen threshold.
    """
    missing = [c for c in ("label", "score") if c not in scores.columns]
    if missing:
        raise FidBenchError(f"bootstrap: scores frame lacks column(s) {missing}")
    test = scores[scores["split"] == "test"] if "split" in scores.columns else scores
    test = test[test["label"].isin((0, 1))]
    y = test["label"].to_numpy(dtype=np.int64)
    s = test["score"].to_numpy(dtype=np.float64)
    out: dict[str, float] = {}
    out["roc_auc_ci_low"], out["roc_auc_ci_high"] = bootstrap_ci(y, s, roc_auc, n_boot, alpha, seed)
    if metric_registry.names(interval=True):
        from fid_bench.evaluation.metrics import SCORE_FUNCTIONS

        for name in metric_registry.names(interval=True):
            fn = SCORE_FUNCTIONS[name]
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bootstrap_ci(y, s, fn, n_boot, alpha, seed)
    if threshold is None or math.isnan(threshold):
        out["f1_ci_low"] = out["f1_ci_high"] = NAN
    else:
        out["f1_ci_low"], out["f1_ci_high"] = bootstrap_ci(y, s, f1_at(threshold), n_boot, alpha, seed)
    return out
