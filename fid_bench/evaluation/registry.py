"""Metric directions: which metrics are better when smaller."""

from __future__ import annotations

#: metrics where a smaller value is better; every other metric is maximised
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "brier_score", "ece", "eer", "loss"})


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.endswith("_loss") or metric.endswith("_std")
