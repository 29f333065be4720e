"""Runs made from a scores frame rather than by a job: ensembles and imported predictions.

``scored_run`` starts such a run (its kind tag, the tags every run carries, its params) and ends it
as ``tracked_run`` ends a job's run. ``log_held_out`` then logs what a job logs for its test rows:
the metrics of ``fid_bench.evaluation.held_out`` (per-group metrics and bootstrap intervals
included), ``predictions.csv`` with the validation rows next to the test rows, and the plots. The
leaderboard, ``compare`` and the paired tests therefore read these runs exactly as they read jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fid_bench.errors import FidBenchError, first_line
from fid_bench.evaluation.held_out import HeldOutSettings, held_out_metrics
from fid_bench.tracking.kinds import KIND_TAG, RunKind
from fid_bench.tracking.run import TrackedRun, closing_run, common_tags
from fid_bench.tracking.store import open_experiment

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@contextmanager
def scored_run(
    uri: str,
    experiment: str,
    *,
    kind: RunKind,
    name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    source: str,
) -> Iterator[TrackedRun]:
    """A new run of ``kind`` in ``experiment`` (created if missing), the active MLflow run while open.

    ``source`` is the command that made it (the UI's Source column). The run ends FINISHED, or
    FAILED with the error recorded, like a job's.
    """
    import mlflow

    client, experiment_id, uri = open_experiment(uri, experiment)
    # a model is logged through MLflow's fluent API: the global URI and an active run
    mlflow.set_tracking_uri(uri)
    all_tags = {**common_tags(), "mlflow.source.name": source, **tags, KIND_TAG: kind.value}
    try:
        active = mlflow.start_run(
            experiment_id=experiment_id, run_name=name, tags=all_tags, nested=mlflow.active_run() is not None
        )
    except Exception as err:  # noqa: BLE001 - a store failure is one readable line
        raise FidBenchError(f"cannot start an MLflow run in {uri}: {first_line(err)}") from None
    run = TrackedRun(client, active.info.run_id, experiment_id, name)
    log.info("MLflow run %s (%s, kind %s) in experiment %s at %s", name, run.run_id, kind, experiment, uri)
    with closing_run(run):
        run.log_params(params)
        yield run


def log_held_out(
    run: TrackedRun, scores: pd.DataFrame, settings: HeldOutSettings, *, threshold: float | None = None
) -> dict[str, float]:
    """Metrics, ``predictions.csv`` and plots of ``scores`` (``SCORE_COLUMNS``), as a job logs them.

    ``threshold``: None chooses it on the ``val`` rows as a job does. Returns the logged metrics.
    """
    metrics = held_out_metrics(scores, settings, threshold=threshold)
    run.log_metrics(metrics)
    run.log_scores(scores, metrics, calibration_bins=settings.calibration_bins)
    return metrics
