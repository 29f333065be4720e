"""Metrics for every track, computed from a scores frame on held-out rows only.

``evaluate_scores`` picks a decision threshold on ``split == "val"`` rows (the one that maximises
F1) and measures everything on ``split == "test"`` rows, so no test label influences a reported
number. Threshold-dependent metrics are reported twice where it matters: ``f1`` at the fixed 0.5
and ``f1_at_threshold`` at the validation-chosen threshold.

Conventions:
* a row is predicted "generated" when ``score >= threshold``;
* a metric that is undefined for the data (e.g. ROC-AUC with one class in the test rows, precision
  with no positive prediction) is NaN and logged as a warning, never an exception;
* ``log_loss`` clips probabilities to ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` so one overconfident
  mistake costs at most ~16 nats instead of dominating the mean.

Operating-point and calibration metrics (directions: higher is better for ``tpr_at_fpr_*``,
lower is better for ``eer``, ``ece`` and ``brier``):

* ``tpr_at_fpr_1pct`` / ``tpr_at_fpr_5pct``: the true positive rate of the most permissive rule
  ``score >= t`` whose false positive rate does not exceed 1 % / 5 %, i.e. the share of generated
  images scoring strictly above the ``(k + 1)``-th highest real score, ``k = floor(fpr * n_real)``
  (the budget of false accusations is never exceeded, ties included);
* ``eer``: the equal error rate, where the false positive rate equals the false negative rate on
  the ROC curve (linear interpolation between its two nearest points);
* ``ece``: expected calibration error of the score as a probability of "generated", with
  ``calibration_bins`` equal-width bins: ``sum_b n_b / n * |positive rate_b - mean score_b|``;
* ``brier``: mean squared difference between score and label.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError
from fid_bench.evaluation import metric_registry

log = logging.getLogger(__name__)

LOG_LOSS_EPS = 1e-7
NAN = float("nan")

#: the false positive rates of the ``tpr_at_fpr_*`` metrics, by metric name
OPERATING_FPRS = {"tpr_at_fpr_1pct": 0.01, "tpr_at_fpr_5pct": 0.05}
#: equal-width bins of ``ece`` and the reliability diagram (``eval.calibration_bins``)
CALIBRATION_BINS = 15

#: keys of ``compute_metrics`` (besides ``n`` and ``positive_rate``); ``evaluate_scores`` reports them
#: for the test rows
CURVE_METRICS = metric_registry.names(source=metric_registry.CURVE)
THRESHOLD_METRICS = metric_registry.names(source=metric_registry.AT_THRESHOLD)


def _as_arrays(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> tuple:
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise FidBenchError(
            f"metrics: labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}"
        )
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()
        raise FidBenchError(f"metrics: labels must be 0 (real) or 1 (generated), got {bad}")
    if not np.isfinite(s).all():
        raise FidBenchError(f"metrics: {int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise FidBenchError(
            f"metrics: scores must be probabilities in [0, 1], got range [{s.min():.4g}, {s.max():.4g}]"
        )
    return y.astype(np.int64), s


def best_f1_threshold(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """A threshold ``t`` maximising F1 of the rule ``score >= t``; NaN if F1 is undefined.

    Every distinct way to cut the ranked scores is tried; ties in F1 go to the highest cut (fewest
    positive predictions). The threshold is then placed midway between the lowest score above the
    cut and the highest score below it: the predictions on these rows are the same as at the cut,
    and a new score close to either side is not decided by a hair (with perfectly separated
    scores 0.02 and 0.9999, ``t`` is about 0.51, not 0.9999). When every row is predicted positive,
    ``t`` is the lowest score. NaN (with a warning) when there are no rows or no positive rows,
    since every threshold then scores F1 = 0.
    """
    y, s = _as_arrays(y_true, score)
    n_pos = int(y.sum())
    if y.size == 0 or n_pos == 0:
        log.warning(
            "threshold: %s; threshold is NaN",
            "no validation rows" if y.size == 0 else "no positive validation rows",
        )
        return NAN
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.arange(1, y.size + 1) - tp
    # cut only after the last of a run of equal scores: ">= t" includes every tie
    cuts = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), y.size - 1]
    f1 = 2 * tp[cuts] / (tp[cuts] + fp[cuts] + n_pos)
    cut = int(cuts[int(np.argmax(f1))])
    if cut == y.size - 1:
        return float(s_sorted[cut])
    return float((s_sorted[cut] + s_sorted[cut + 1]) / 2)


def tpr_at_fpr(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, fpr: float) -> float:
    """True positive rate of the most permissive ``score >= t`` with false positive rate <= ``fpr``.

    With ``k = floor(fpr * n_neg)`` false positives allowed, the rule must leave out the
    ``(k + 1)``-th highest negative score, so the rate is the share of positives scoring strictly
    above it (1.0 when ``k >= n_neg``). NaN when a class is missing.
    """
    if not 0.0 <= fpr <= 1.0:
        raise FidBenchError(f"tpr_at_fpr: fpr must be in [0, 1], got {fpr}")
    y, s = _as_arrays(y_true, score)
    neg = np.sort(s[y == 0])[::-1]
    pos = s[y == 1]
    if neg.size == 0 or pos.size == 0:
        return NAN
    # a small tolerance: 0.07 * 100 is 7.000000000000001 in floating point, 0.29 * 100 is 28.999...
    k = int(math.floor(fpr * neg.size + 1e-9))
    if k >= neg.size:
        return 1.0
    return float((pos > neg[k]).mean())


def equal_error_rate(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Where the ROC curve's false positive rate equals its false negative rate; NaN without both classes."""
    from sklearn.metrics import roc_curve

    y, s = _as_arrays(y_true, score)
    if y.size == 0 or y.min() == y.max():
        return NAN
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    d = (1.0 - tpr) - fpr  # from 1 at (0, 0) down to -1 at (1, 1)
    i = int(np.argmax(d <= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    a = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))


def reliability_bins(
    y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, n_bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Per equal-width score bin: ``low``, ``high``, ``n``, ``mean_score``, ``positive_rate`` (NaN if empty).

    Bin ``b`` holds scores in ``[b / n_bins, (b + 1) / n_bins)``; the last bin includes 1.0.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise FidBenchError(f"eval.calibration_bins must be a positive integer, got {n_bins!r}")
    y, s = _as_arrays(y_true, score)
    b = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    n = np.bincount(b, minlength=n_bins).astype(np.float64)
    sum_s = np.bincount(b, weights=s, minlength=n_bins)
    sum_y = np.bincount(b, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = np.where(n > 0, sum_s / n, NAN)
        rate = np.where(n > 0, sum_y / n, NAN)
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame(
        {
            "low": edges[:-1],
            "high": edges[1:],
            "n": n.astype(np.int64),
            "mean_score": mean_s,
            "positive_rate": rate,
        }
    )


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, n_bins: int = CALIBRATION_BINS
) -> float:
    """``sum_b n_b / n * |positive rate_b - mean score_b|`` over equal-width bins; NaN without rows."""
    bins = reliability_bins(y_true, score, n_bins)
    used = bins[bins["n"] > 0]
    total = int(used["n"].sum())
    if total == 0:
        return NAN
    gap = (used["positive_rate"] - used["mean_score"]).abs()
    return float((used["n"] * gap).sum() / total)


def brier_score(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Mean of ``(score - label)^2``; NaN without rows."""
    y, s = _as_arrays(y_true, score)
    return float(np.mean((s - y) ** 2)) if y.size else NAN


#: threshold-free metrics as ``fn(labels, scores) -> float`` by registered name: ``compute_metrics``
#: computes each, and a metric the registry flags ``interval`` or ``paired`` is resampled with it
SCORE_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "eer": equal_error_rate,
    "brier": brier_score,
}


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else NAN


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    *,
    warn: bool = True,
    calibration_bins: int = CALIBRATION_BINS,
) -> dict[str, float]:
    """All metrics of ``score`` against ``y_true``; threshold-dependent ones use ``score >= threshold``.

    Keys: ``n``, ``positive_rate``, ``roc_auc``, ``average_precision``, ``log_loss``,
    ``tpr_at_fpr_1pct``, ``tpr_at_fpr_5pct``, ``eer``, ``ece``, ``brier``, ``accuracy``,
    ``balanced_accuracy``, ``precision``, ``recall``, ``f1``. Undefined values are NaN; pass
    ``warn=False`` to silence the warnings (e.g. inside a bootstrap loop).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _as_arrays(y_true, score)
    n, n_pos = int(y.size), int(y.sum())
    n_neg = n - n_pos
    out: dict[str, float] = {"n": float(n), "positive_rate": _ratio(n_pos, n)}
    undefined: list[str] = []

    if n_pos and n_neg:
        out["roc_auc"] = float(roc_auc_score(y, s))
    else:
        out["roc_auc"] = NAN
        undefined.append("roc_auc")
    if n_pos:
        out["average_precision"] = float(average_precision_score(y, s))
    else:
        out["average_precision"] = NAN
        undefined.append("average_precision")
    if n:
        p = np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        out["log_loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    else:
        out["log_loss"] = NAN
    for name, fpr in OPERATING_FPRS.items():
        out[name] = tpr_at_fpr(y, s, fpr)
    out["eer"] = equal_error_rate(y, s)
    if not (n_pos and n_neg):
        undefined += [*OPERATING_FPRS, "eer"]
    out["ece"] = expected_calibration_error(y, s, calibration_bins)
    out["brier"] = brier_score(y, s)
    for name, fn in SCORE_FUNCTIONS.items():
        if name not in out:
            out[name] = fn(y, s)

    if math.isnan(threshold):
        out.update(dict.fromkeys(THRESHOLD_METRICS, NAN))
    else:
        pred = s >= threshold
        tp = int((pred & (y == 1)).sum())
        fp = int((pred & (y == 0)).sum())
        tn = n_neg - fp
        fn = n_pos - tp
        out["accuracy"] = _ratio(tp + tn, n)
        out["precision"] = _ratio(tp, tp + fp)
        out["recall"] = _ratio(tp, n_pos)
        out["f1"] = _ratio(2 * tp, 2 * tp + fp + fn)
        out["balanced_accuracy"] = (_ratio(tp, n_pos) + _ratio(tn, n_neg)) / 2 if n_pos and n_neg else NAN
        undefined += [k for k in THRESHOLD_METRICS if math.isnan(out[k])]

    if warn and undefined:
        reason = "no rows" if n == 0 else f"{n_pos} positive / {n_neg} negative rows"
        log.warning("metrics undefined (%s): %s set to NaN", reason, ", ".join(undefined))
    return out


def _check_scores(scores: pd.DataFrame) -> None:
    missing = [c for c in ("label", "score", "split") if c not in scores.columns]
    if missing:
        raise FidBenchError(f"metrics: scores frame lacks column(s) {missing}")
    unknown = set(scores["split"].unique()) - {"val", "test"}
    if unknown:
        raise FidBenchError(
            f"metrics: unknown split value(s) {sorted(map(str, unknown))}; expected 'val' or 'test'"
        )


#: the decision threshold of scores whose validation rows cannot choose one
DEFAULT_THRESHOLD = 0.5


def validation_threshold(scores: pd.DataFrame, *, fallback: float = DEFAULT_THRESHOLD) -> float:
    """The decision threshold chosen on the ``val`` rows of ``scores`` (best F1, ``best_f1_threshold``);
    ``fallback`` when they cannot choose one (no validation rows, or no positive among them).

    Every detector and every scored run chooses its threshold here, so a model's threshold and the
    one its metrics report are the same. A frame without a ``split`` column is all validation rows.
    """
    val = scores[scores["split"] == "val"] if "split" in scores.columns else scores
    chosen = best_f1_threshold(val["label"].to_numpy(), val["score"].to_numpy())
    return fallback if math.isnan(chosen) else float(chosen)


def evaluate_scores(
    scores: pd.DataFrame, *, calibration_bins: int = CALIBRATION_BINS, threshold: float | None = None
) -> dict[str, float]:
    """Threshold from the ``val`` rows, every metric on the ``test`` rows (see module docstring).

    ``threshold`` replaces the one chosen on the ``val`` rows (predictions imported without
    validation scores have none to choose on). Keys: ``threshold``, ``roc_auc`` (primary),
    ``average_precision``, ``f1`` (at 0.5), ``f1_at_threshold``, ``accuracy``, ``balanced_accuracy``,
    ``precision``, ``recall`` (at 0.5), ``log_loss``, ``tpr_at_fpr_1pct``, ``tpr_at_fpr_5pct``,
    ``eer``, ``ece``, ``brier``, ``n_test``, ``n_val``, ``test_positive_rate``.
    """
    _check_scores(scores)
    val = scores[scores["split"] == "val"]
    test = scores[scores["split"] == "test"]
    if threshold is None:
        threshold = validation_threshold(scores, fallback=NAN)
    y_test, s_test = test["label"].to_numpy(), test["score"].to_numpy()
    if test.empty:
        log.warning("metrics: no test rows; test metrics are NaN")
    at_half = compute_metrics(y_test, s_test, 0.5, calibration_bins=calibration_bins)
    if math.isnan(threshold):
        f1_at_threshold = NAN
    else:
        f1_at_threshold = compute_metrics(y_test, s_test, threshold, warn=False)["f1"]
    out = {"threshold": threshold}
    out.update({k: at_half[k] for k in CURVE_METRICS + THRESHOLD_METRICS})
    out["f1_at_threshold"] = f1_at_threshold
    out["n_test"] = float(len(test))
    out["n_val"] = float(len(val))
    out["test_positive_rate"] = at_half["positive_rate"]
    return out


def aggregate_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """One fold: its metrics unchanged. K folds: mean per metric, ``<name>_std`` (ddof=1), ``n_folds``.

    A metric that is NaN in some folds is averaged over the folds where it is defined (with a
    warning); a metric missing from a fold counts as NaN there.
    """
    if not per_fold:
        raise FidBenchError("aggregate_folds: no fold results to aggregate")
    if len(per_fold) == 1:
        return dict(per_fold[0])
    names = list(dict.fromkeys(k for fold in per_fold for k in fold))
    out: dict[str, float] = {}
    partly: list[str] = []
    never: list[str] = []
    for name in names:
        vals = np.array([float(fold.get(name, NAN)) for fold in per_fold], dtype=np.float64)
        ok = vals[~np.isnan(vals)]
        if ok.size == 0:
            never.append(name)
        elif ok.size < vals.size:
            partly.append(f"{name} ({vals.size - ok.size} of {vals.size})")
        out[name] = float(ok.mean()) if ok.size else NAN
        out[f"{name}_std"] = float(ok.std(ddof=1)) if ok.size > 1 else NAN
    # one line each: per-group metrics can make dozens of names undefined at once
    if partly:
        log.warning("metrics NaN in some folds, averaged over the others: %s", ", ".join(partly))
    if never:
        log.info("metrics undefined in every fold: %s", ", ".join(never))
    out["n_folds"] = float(len(per_fold))
    return out
