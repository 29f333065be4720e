"""What a run logs for its scores: ``predictions.csv``, the plots drawn from them, and the held-out
metrics a job logs for its test rows.

Jobs, ensembles and imported predictions log through here, so the leaderboard, ``compare`` and the
paired tests read every kind of scored run alike. The run only logs; the figures are drawn here
(``fid_bench.evaluation.plots``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fid_bench.evaluation import plots
from fid_bench.evaluation.held_out import HeldOutSettings, held_out_metrics
from fid_bench.tracking.logged_run import SilentRun, TrackedRun
from fid_bench.tracking.logged_values import metric_value

if TYPE_CHECKING:
    import pandas as pd


def log_scores(
    run: TrackedRun, scores: pd.DataFrame, metrics: Mapping[str, Any], *, calibration_bins: int = 15
) -> None:
    """``predictions.csv`` plus ROC, PR, reliability and confusion-matrix PNGs under ``plots/``;
    figures that could not be drawn are named in the tag ``plot_errors``."""
    if isinstance(run, SilentRun):
        return  # a DDP rank > 0: rank 0 logs the job
    with tempfile.TemporaryDirectory() as tmp:
        plot_dir = Path(tmp) / "plots"
        plot_dir.mkdir()
        failed = plots.score_plots(
            scores,
            plot_dir,
            title=run.name,
            threshold=metric_value(metrics.get("threshold")),
            calibration_bins=calibration_bins,
        )
        log_drawn_scores(run, scores, plot_dir, failed)


def log_drawn_scores(run: TrackedRun, scores: pd.DataFrame, plot_dir: Path | None, failed: list[str]) -> None:
    """``predictions.csv``, the plots already drawn in ``plot_dir`` (under ``plots/``) and the tag
    ``plot_errors`` naming those that could not be drawn."""
    if isinstance(run, SilentRun):
        return
    run.log_predictions(scores)
    if plot_dir is not None and plot_dir.is_dir() and any(plot_dir.iterdir()):
        run.log_artifact(plot_dir, "plots")
    if failed:
        run.set_tags({"plot_errors": "; ".join(failed)})


def log_held_out(
    run: TrackedRun, scores: pd.DataFrame, settings: HeldOutSettings, *, threshold: float | None = None
) -> dict[str, float]:
    """Metrics, ``predictions.csv`` and plots of ``scores`` (``SCORE_COLUMNS``), as a job logs them.

    ``threshold``: None chooses it on the ``val`` rows as a job does. Returns the logged metrics.
    """
    metrics = held_out_metrics(scores, settings, threshold=threshold)
    run.log_metrics(metrics)
    log_scores(run, scores, metrics, calibration_bins=settings.calibration_bins)
    return metrics
