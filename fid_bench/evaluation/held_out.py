"""The metrics of one hold-out's scores, as every run that reports test rows logs them.

A job computes them for each fold; an ensemble or an imported run for its one scores frame. One
function for all of them, so their numbers, per-group metrics and bootstrap intervals are computed
by the same code and the leaderboard and the paired tests compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fid_bench.evaluation.generalisation import group_metrics
from fid_bench.evaluation.metrics import (
    CALIBRATION_BINS,
    DEFAULT_THRESHOLD,
    evaluate_scores,
    validation_threshold,
)
from fid_bench.evaluation.uncertainty import bootstrap_metrics


@dataclass(frozen=True)
class HeldOutSettings:
    """``eval.bootstrap`` resamples (0: no intervals), the ``seed`` and ``eval.calibration_bins``."""

    bootstrap: int
    seed: int
    calibration_bins: int = CALIBRATION_BINS

    @classmethod
    def of_config(cls, cfg: Any) -> HeldOutSettings:
        """The settings of a composed config (``cfg.eval``, ``cfg.seed``)."""
        return cls(
            bootstrap=int(cfg.eval.bootstrap or 0),
            seed=int(cfg.seed),
            calibration_bins=int(cfg.eval.get("calibration_bins", CALIBRATION_BINS)),
        )

    @classmethod
    def packaged(cls) -> HeldOutSettings:
        """The packaged config's defaults (what a job run without overrides uses)."""
        from omegaconf import OmegaConf

        from fid_bench.config import CONFIG_NAME, conf_dir

        return cls.of_config(OmegaConf.load(conf_dir() / f"{CONFIG_NAME}.yaml"))

    @classmethod
    def of_params(cls, params: Mapping[str, str], default: HeldOutSettings) -> HeldOutSettings:
        """The settings a run logged as params (``eval.bootstrap``, ``seed``, ...), else ``default``'s."""

        def number(key: str, fallback: int) -> int:
            try:
                return int(float(params[key]))
            except (KeyError, ValueError):
                return fallback

        return cls(
            bootstrap=number("eval.bootstrap", default.bootstrap),
            seed=number("seed", default.seed),
            calibration_bins=number("eval.calibration_bins", default.calibration_bins),
        )

    def params(self) -> dict[str, int]:
        """The same keys a job logs, so a run made from this one (an ensemble of ensembles) reads them back."""
        return {
            "eval.bootstrap": self.bootstrap,
            "seed": self.seed,
            "eval.calibration_bins": self.calibration_bins,
        }


def held_out_metrics(
    scores: pd.DataFrame, settings: HeldOutSettings, *, threshold: float | None = None
) -> dict[str, float]:
    """``evaluate_scores`` (threshold chosen on the ``val`` rows unless given), the per-group metrics
    and the bootstrap intervals of the ``test`` rows at that threshold."""
    metrics = evaluate_scores(scores, calibration_bins=settings.calibration_bins, threshold=threshold)
    chosen = metrics["threshold"]
    metrics.update(group_metrics(scores, chosen))
    if settings.bootstrap:
        metrics.update(bootstrap_metrics(scores, chosen, n_boot=settings.bootstrap, seed=settings.seed))
    return metrics


def fold_metrics(scores: pd.DataFrame, settings: HeldOutSettings, *, final: bool) -> dict[str, float]:
    """One fold's metrics: a final run's ``held_out_metrics`` (per group, with bootstrap intervals,
    as ensembles and imports log them); a search trial's plain ``evaluate_scores`` (its validation
    rows stand in for the test rows, and intervals would only cost time)."""
    if final:
        return held_out_metrics(scores, settings)
    return evaluate_scores(scores, calibration_bins=settings.calibration_bins)


def threshold_and_source(scores: pd.DataFrame) -> tuple[float, str]:
    """The threshold a job chooses on the ``val`` rows (best F1), and where it came from; ``0.5``
    when there are none (e.g. imported test scores only) or they cannot choose one (no positive)."""
    val = scores[scores["split"] == "val"]
    if val.empty:
        return DEFAULT_THRESHOLD, f"{DEFAULT_THRESHOLD:g} (no validation rows scored)"
    chosen = validation_threshold(val, fallback=math.nan)
    if math.isnan(chosen):
        return DEFAULT_THRESHOLD, f"{DEFAULT_THRESHOLD:g} (the {len(val)} validation rows have no positive)"
    return chosen, f"chosen on {len(val)} validation rows, best F1"
