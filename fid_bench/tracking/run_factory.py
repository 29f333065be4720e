"""``start_run``: the one place an MLflow run is started, whatever its kind.

A job's run (``job_run.tracked_run``), a run made from scores (``scored_run``), a multirun's parent
(``callbacks``), a study's parent (``fid_bench.jobs.search.study``) and a comparison (``compare``) all
begin here, so every run gets its kind tag, its name and its parent the same way, and a store that
refuses a run is one readable line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fid_bench.errors import FidBenchError, first_line
from fid_bench.tracking.kinds import KIND_TAG, RunKind
from fid_bench.tracking.logged_run import TrackedRun
from fid_bench.tracking.store import OpenExperiment

log = logging.getLogger(__name__)

#: the tag MLflow nests a run under its parent by
PARENT_TAG = "mlflow.parentRunId"


def start_run(
    kind: RunKind,
    experiment: OpenExperiment,
    name: str,
    tags: Mapping[str, str],
    parent: str | None = None,
    *,
    active: bool = False,
    system_metrics: bool | None = None,
) -> TrackedRun:
    """Start a run of ``kind`` named ``name`` in ``experiment``, nested under ``parent`` when given.

    ``active``: the run becomes MLflow's active (fluent) run, which logging a model needs; the
    caller ends it (``logged_run.closing_run``). Otherwise the run is only created, for runs that
    outlive the call (a multirun's or a study's parent) and are ended by their owner.
    ``system_metrics`` (active runs only) samples CPU, memory and GPU while the run is open (None:
    MLflow's default, its environment variable).
    """
    client, experiment_id, uri = experiment
    all_tags = {**tags, KIND_TAG: RunKind(kind).value}
    try:
        if active:
            import mlflow

            # model logging goes through MLflow's fluent API, which needs the global URI and an active run
            mlflow.set_tracking_uri(uri)
            run_id = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=name,
                parent_run_id=parent,
                tags=all_tags,
                nested=mlflow.active_run() is not None,
                log_system_metrics=system_metrics,
            ).info.run_id
        else:
            if parent is not None:
                all_tags[PARENT_TAG] = parent
            run_id = client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id
    except Exception as err:  # noqa: BLE001 - a store failure is one readable line
        raise FidBenchError(f"cannot start an MLflow run in {uri}: {first_line(err)}") from None
    log.info("MLflow run %s (%s, kind %s) in experiment %s at %s", name, run_id, kind, experiment_id, uri)
    return TrackedRun(client, run_id, experiment_id, name)
