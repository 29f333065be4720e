"""The metric registry: every metric fid_bench computes or ranks by, where it comes from, which way is better.

Evaluation reads its metric lists from here (``compute_metrics`` keys, the metrics repeated per extra
data set / perturbation / group); the leaderboard its headline columns and its default order; compare
its table columns; ``predict --run best`` and ``compare --top`` their ranking; the Optuna search its
default direction; the multirun summary its "best" child.

``direction(name)`` understands the names the harness logs around a registered metric:

* prefixes of a data set, perturbation or group: ``shoes/roc_auc``, ``jpeg75/log_loss``,
  ``logo/<group>/roc_auc`` (the last path segment is the metric);
* the split or summary in front: ``val_roc_auc``, ``train_loss``, ``test_positive_rate``, ``best_log_loss``;
* ``_ci_low`` / ``_ci_high``: a bound of the metric's confidence interval, better the same way as
  the metric (a higher lower bound of ROC-AUC, a lower upper bound of a loss);
* ``_std``: the spread over cross-validation folds, better when smaller whatever the metric.

An unregistered name is better when smaller if it ends in ``loss``, else when larger (the order a
count or an unknown number was always ranked in). This module imports nothing from fid_bench.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]

# where a metric's value comes from
CURVE = "compute_metrics, threshold-free"
AT_THRESHOLD = "compute_metrics, at a threshold"
COUNTS = "compute_metrics, counts"
EVALUATION = "evaluate_scores"
FOLDS = "aggregate_folds"
TRAINING = "fine-tuning epochs (train_/val_ prefix)"
AUDIT = "data audit"
LOSO = "leave-one-source-out folds (cv.leave_one_source_out)"
EXTERNAL = "not computed by fid_bench; registered so that a run logging it ranks the right way"


@dataclass(frozen=True)
class Metric:
    """One registered metric."""

    name: str
    #: True: larger is better; False: smaller is better; None: not a score (a count, the threshold)
    higher_is_better: bool | None
    source: str
    #: position among the leaderboard's headline columns; None: not a headline metric
    headline: int | None = None
    #: repeated under each extra data set, perturbation and group prefix (``shoes/roc_auc``)
    per_prefix: bool = False
    #: a column of ``fid-bench compare``'s table
    tabulated: bool = False
    #: a bootstrap interval on the test rows, logged as ``<name>_ci_low`` / ``<name>_ci_high``, computed
    #: with ``metrics.SCORE_FUNCTIONS[name]`` (ROC-AUC and F1 have their own, faster rule)
    interval: bool = False
    #: compared between two runs by the paired bootstrap (``fid-bench compare``), with the same function
    paired: bool = False


_ALL = (
    Metric("roc_auc", True, CURVE, headline=1, per_prefix=True, tabulated=True),
    Metric("average_precision", True, CURVE, headline=3, per_prefix=True, tabulated=True),
    Metric("f1", True, AT_THRESHOLD, headline=2, per_prefix=True, tabulated=True),
    Metric("f1_at_threshold", True, EVALUATION, tabulated=True),
    Metric("accuracy", True, AT_THRESHOLD, per_prefix=True, tabulated=True),
    Metric("balanced_accuracy", True, AT_THRESHOLD, per_prefix=True, tabulated=True),
    Metric("precision", True, AT_THRESHOLD, tabulated=True),
    Metric("recall", True, AT_THRESHOLD, tabulated=True),
    Metric("log_loss", False, CURVE, per_prefix=True, tabulated=True),
    # the operating points a user cares about (few false accusations) and calibration
    Metric("tpr_at_fpr_1pct", True, CURVE, tabulated=True),
    Metric("tpr_at_fpr_5pct", True, CURVE, tabulated=True),
    Metric("eer", False, CURVE, tabulated=True),
    Metric("ece", False, CURVE, tabulated=True),
    Metric("brier", False, CURVE, tabulated=True),
    Metric("threshold", None, EVALUATION, tabulated=True),
    Metric("n", None, COUNTS, per_prefix=True),
    Metric("positive_rate", None, COUNTS),
    Metric("n_test", None, EVALUATION),
    Metric("n_val", None, EVALUATION),
    Metric("test_positive_rate", None, EVALUATION),
    Metric("n_folds", None, FOLDS),
    Metric("loss", False, TRAINING),
    Metric("audit/n_warnings", False, AUDIT),
    # leave-one-source-out: the held-out sources' ROC-AUC, mean and worst (what the next generator risks)
    Metric("loso/worst_roc_auc", True, LOSO, headline=4),
    Metric("loso/mean_roc_auc", True, LOSO),
    Metric("brier_score", False, EXTERNAL),
)
#: name -> metric, in the order above (the order of every list read from here)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}

#: what a prefix in front of a metric may say (the split it was measured on, or a summary)
_LEADING = ("val_", "train_", "test_", "best_")
#: bounds of a confidence interval: the metric's own direction
_BOUNDS = ("_ci_low", "_ci_high")
#: spread over folds: smaller is better
_SPREAD = "_std"


def names(
    *,
    source: str | None = None,
    per_prefix: bool | None = None,
    tabulated: bool | None = None,
    interval: bool | None = None,
    paired: bool | None = None,
) -> tuple[str, ...]:
    """Registered names, in registry order, that match every criterion given."""
    return tuple(
        m.name
        for m in METRICS.values()
        if (source is None or m.source == source)
        and (per_prefix is None or m.per_prefix == per_prefix)
        and (tabulated is None or m.tabulated == tabulated)
        and (interval is None or m.interval == interval)
        and (paired is None or m.paired == paired)
    )


def headline() -> tuple[str, ...]:
    """The leaderboard's headline metrics, in column order."""
    chosen = [m for m in METRICS.values() if m.headline is not None]
    return tuple(m.name for m in sorted(chosen, key=lambda m: m.headline or 0))


def lookup(name: str) -> Metric | None:
    """The registered metric a logged name is about (see the module docstring), or None."""
    if name in METRICS:
        return METRICS[name]
    leaf = name.rsplit("/", 1)[-1]
    for suffix in (*_BOUNDS, _SPREAD):
        if leaf.endswith(suffix) and len(leaf) > len(suffix):
            leaf = leaf[: -len(suffix)]
            break
    while leaf not in METRICS:
        lead = next((p for p in _LEADING if leaf.startswith(p) and len(leaf) > len(p)), None)
        if lead is None:
            return None
        leaf = leaf[len(lead) :]
    return METRICS[leaf]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the logged metric ``name`` is better (see the module docstring)."""
    leaf = name.rsplit("/", 1)[-1]
    if leaf.endswith(_SPREAD) and name not in METRICS:
        return False
    metric = lookup(name)
    if metric is None:
        return not leaf.endswith("loss")
    return metric.higher_is_better is not False


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of the logged metric ``name`` is better."""
    return not higher_is_better(name)


def direction(name: str) -> Direction:
    """``maximize`` or ``minimize``: how to rank runs, or steer a search, by the metric ``name``."""
    return "maximize" if higher_is_better(name) else "minimize"
