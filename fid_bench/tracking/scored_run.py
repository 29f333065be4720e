"""Runs made from a scores frame rather than by a job: ensembles and imported predictions.

``scored_run`` starts such a run (its kind tag, the tags every run carries, its params) and ends it
as ``tracked_run`` ends a job's run. ``fid_bench.tracking.logged_scores.log_held_out`` then logs
what a job logs for its test rows, so the leaderboard, ``compare`` and the paired tests read these
runs exactly as they read jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fid_bench.tracking.kinds import RunKind
from fid_bench.tracking.logged_run import TrackedRun, closing_run
from fid_bench.tracking.run_factory import start_run
from fid_bench.tracking.run_tags import common_tags
from fid_bench.tracking.store import open_experiment


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
    all_tags = {**common_tags(), "mlflow.source.name": source, **tags}
    run = start_run(kind, open_experiment(uri, experiment), name, all_tags, active=True)
    with closing_run(run):
        run.log_params(params)
        yield run
