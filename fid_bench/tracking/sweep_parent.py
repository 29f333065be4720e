"""``ParentRunCallback``: one MLflow parent run per Hydra multirun.

``on_multirun_start`` (in the launching process) creates the parent run and records its id in
``<sweep dir>/mlflow_parent_run.json`` (``sweep_files``); every job, whether it runs in this
process (basic launcher), in a worker process (joblib) or on another machine (submitit), reads that
file in ``job_run.tracked_run`` and nests its run under the parent. ``on_multirun_end`` closes the
parent with a summary of its children and prints their leaderboard. If the sweep dies before its
end, the parent is closed as KILLED at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fid_bench.errors import PARTLY_FAILED_EXIT, FidBenchError, failures_report, first_line, one_line
from fid_bench.evaluation import metric_registry
from fid_bench.tracking import sweep_report
from fid_bench.tracking.compare import compare_children
from fid_bench.tracking.kinds import RunKind
from fid_bench.tracking.leaderboard import Query, add_top_marks, leaderboard, render
from fid_bench.tracking.logged_values import resolved_config
from fid_bench.tracking.run_factory import PARENT_TAG, start_run
from fid_bench.tracking.run_queries import fetch_runs, open_store
from fid_bench.tracking.run_tags import common_tags
from fid_bench.tracking.store import TrackingSettings, connect, original_cwd
from fid_bench.tracking.sweep_files import recorded_failures, sweep_dir_of, write_parent_file
from fid_bench.tracking.sweep_report import log_sweep_report
from fid_bench.tracking.ui import NOTE_TAG, TOP_TAG

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

ORPHAN_ERROR = "job ended without closing its run (worker killed?)"


@dataclass
class ParentRun:
    run_id: str
    experiment_id: str
    tracking_uri: str
    sweep_dir: Path


def start_parent_run(config: DictConfig) -> ParentRun:
    """Create the parent run of a multirun and record it in the sweep dir for the jobs."""
    hydra = config.hydra
    experiment = TrackingSettings.of_config(config.get("tracking"), original_cwd(hydra)).open()
    client, experiment_id, uri = experiment
    # resolving sweep.dir here caches ${now:...} in this config, so the sweeper uses the same dir
    sweep_dir = sweep_dir_of(hydra)
    choices = OmegaConf.select(hydra, "runtime.choices", default={}) or {}
    overrides = " ".join(str(o) for o in (OmegaConf.select(hydra, "overrides.task", default=[]) or []))
    task_name = str(config.get("task_name") or "multirun")
    tags = {
        "sweep_dir": str(sweep_dir),
        "overrides": overrides,
        "task_name": task_name,
        "launcher": str(choices.get("hydra/launcher", "")),
        "sweeper": str(choices.get("hydra/sweeper", "")),
        **common_tags(),
    }
    run_id = start_run(RunKind.PARENT, experiment, f"{task_name}-{sweep_dir.name}", tags).run_id
    try:
        job_cfg = OmegaConf.create(resolved_config(config))
        client.log_text(run_id, OmegaConf.to_yaml(job_cfg), "config.yaml")
    except Exception as err:  # noqa: BLE001 - the base config is informative only
        log.warning("parent run: config not logged (%s)", first_line(err))
    write_parent_file(sweep_dir, {"run_id": run_id, "tracking_uri": uri, "experiment_id": experiment_id})
    log.info("MLflow parent run %s for multirun %s", run_id, sweep_dir)
    return ParentRun(run_id, experiment_id, uri, sweep_dir)


def child_runs(client: MlflowClient, parent_id: str) -> list[Run]:
    """Every run nested under ``parent_id``, in any experiment (jobs may sweep over data sets)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    return fetch_runs(client, ids, f"tags.`{PARENT_TAG}` = '{parent_id}'") if ids else []


def _direction(config: DictConfig, metric: str) -> str:
    """The sweeper's direction when it declares one, else the metric's direction in the metric_registry."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction is not None and not isinstance(direction, str):  # multi-objective: the first objective
        direction = str(list(direction)[0]) if direction else None
    if not direction:
        return metric_registry.direction(metric)
    return "minimize" if direction.lower().startswith("min") else "maximize"


def finish_parent_run(config: DictConfig, parent: ParentRun, *, interrupted: bool = False) -> dict[str, Any]:
    """Summarise the children on the parent and end it; returns the summary."""
    client = connect(parent.tracking_uri)
    children = child_runs(client, parent.run_id)
    for run in children:
        if run.info.status == "RUNNING":
            # its job is over (the launcher returned), so nothing will ever close it
            client.set_tag(run.info.run_id, "error", ORPHAN_ERROR)
            client.set_terminated(run.info.run_id, "KILLED" if interrupted else "FAILED")
    children = child_runs(client, parent.run_id)
    finished = [r for r in children if r.info.status == "FINISHED"]
    failed = [r for r in children if r.info.status in ("FAILED", "KILLED")]
    metric = str(config.get("optimized_metric") or "roc_auc")
    summary: dict[str, Any] = {
        "n_children_finished": len(finished),
        "n_children_failed": len(failed),
        "metric": metric,
    }
    # what the failed jobs recorded (also those that failed before their run existed), then the
    # runs that say more than their job could (workers killed mid-job)
    failures = recorded_failures(parent.sweep_dir)
    failures += [
        (r.info.run_name or r.info.run_id[:8], r.data.tags.get("error") or r.info.status)
        for r in sorted(failed, key=lambda r: r.info.start_time or 0)
        if r.data.tags.get("error") == ORPHAN_ERROR or not failures
    ]
    summary["failures"] = failures
    summary["n_children_failed"] = max(len(failed), len(failures))
    client.log_metric(parent.run_id, "n_children_finished", len(finished))
    client.log_metric(parent.run_id, "n_children_failed", summary["n_children_failed"])
    scored = [
        (r.data.metrics[metric], r)
        for r in finished
        if metric in r.data.metrics and not math.isnan(r.data.metrics[metric])
    ]
    if scored:
        pick = min if _direction(config, metric) == "minimize" else max
        value, best = pick(scored, key=lambda pair: pair[0])
        client.log_metric(parent.run_id, f"best_{metric}", value)
        client.set_tag(parent.run_id, "best_run_id", best.info.run_id)
        client.set_tag(parent.run_id, "best_run_name", best.info.run_name or "")
        summary.update({f"best_{metric}": value, "best_run_id": best.info.run_id})
    note = [f"{len(finished)} finished, {summary['n_children_failed']} failed"]
    if "best_run_id" in summary:
        best = next(r for r in finished if r.info.run_id == summary["best_run_id"])
        note.insert(
            0,
            f"best: **{best.info.run_name}** ({best.info.run_id[:8]}) {metric} {summary[f'best_{metric}']:.4f}",
        )
    note.append("`report.html` in Artifacts: leaderboard, curves, per-group bars, audit warnings")
    client.set_tag(parent.run_id, NOTE_TAG, " · ".join(note))
    status = "KILLED" if interrupted else ("FINISHED" if finished else "FAILED")
    client.set_terminated(parent.run_id, status)
    summary["status"] = status
    return summary


def children_leaderboard(parent: ParentRun, metric: str, top: int) -> str:
    """The leaderboard of the parent's finished children, as a text table, with the ``~top`` marks
    of ``fid-bench leaderboard`` (children tied in ROC-AUC with the best one, DeLong + Holm)."""
    client = open_store(parent.tracking_uri)
    boards = leaderboard(client, Query(metric=metric, top=top, parent=parent.run_id))
    add_top_marks(client, boards)
    # the same marks as a run tag, a column of the UI's saved view ("behind": significantly behind the top run)
    for board in boards:
        if board.marks is None:
            continue
        for run_id, mark in board.marks.table["mark"].items():
            try:
                client.set_tag(str(run_id), TOP_TAG, mark or "behind")
            except Exception as err:  # noqa: BLE001 - a column of the UI, not the sweep's result
                log.warning("run %s: tag %s not set: %s", run_id, TOP_TAG, first_line(err))
    return render(boards, "table", headings=len(boards) > 1)


#: a sweep with more jobs than this has only its first ones composed before it starts
MAX_VALIDATED_JOBS = 200


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override lists of a basic-sweeper multirun's jobs, as Hydra's sweeper will expand them
    (other sweepers choose their points as they go: none)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if not target.endswith("BasicSweeper") or not GlobalHydra.instance().is_initialized():
        return []
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    return [list(job) for batch in batches for job in batch]


def validate_sweep(config: DictConfig) -> str | None:
    """What is wrong with the sweep's jobs (an unknown option, an unset or missing data root), as one
    line naming the job, or None; checked before the parent run exists."""
    from hydra.core.global_hydra import GlobalHydra

    from fid_bench.config import require_data_root, require_set

    try:
        jobs = sweep_jobs(config)
    except Exception as err:  # noqa: BLE001 - Hydra's parser errors: one line
        return f"overrides: {one_line(err)}"
    for overrides in jobs[:MAX_VALIDATED_JOBS]:
        try:
            job = GlobalHydra.instance().config_loader().load_sweep_config(config, overrides)
            require_set(job)
            require_data_root(job)
        except Exception as err:  # noqa: BLE001 - composition errors of any kind: one line
            return f"job {' '.join(overrides)}: {one_line(err)}"
    return None


class ParentRunCallback(Callback):
    """Hydra callback (``hydra.callbacks``) that owns the parent run of a multirun."""

    def __init__(self) -> None:
        self.parent: ParentRun | None = None
        self._config: DictConfig | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # a typo in one job's overrides must not leave an empty KILLED parent run behind
        problem = validate_sweep(config)
        if problem:
            print(f"error: {problem}; nothing was run", file=sys.stderr, flush=True)
            raise SystemExit(2)  # passes Hydra's callback wrapper, which would only warn
        try:
            self.parent = start_parent_run(config)
        except Exception as err:  # noqa: BLE001 - the jobs still run (and log) without a parent
            log.error("MLflow parent run not created (%s); jobs are logged without a parent", first_line(err))
            return
        self._config = config
        # Hydra skips on_multirun_end when the sweep raises (Ctrl-C, a job's uncaught error)
        atexit.register(self._close_interrupted)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent, self.parent = self.parent, None
        if parent is None:
            return
        atexit.unregister(self._close_interrupted)
        try:
            summary = finish_parent_run(config, parent)
        except Exception as err:  # noqa: BLE001 - the jobs are done; report, do not crash the exit
            log.error("MLflow parent run %s not closed: %s", parent.run_id, first_line(err))
            return
        metric = summary["metric"]
        lines = [
            f"multirun {parent.sweep_dir}: {summary['n_children_finished']} finished, "
            f"{summary['n_children_failed']} failed (MLflow parent run {parent.run_id}, {summary['status']})"
        ]
        top = int(OmegaConf.select(config, "tracking.leaderboard_top", default=10) or 0)
        if top > 0 and summary["n_children_finished"]:
            try:
                lines.append(children_leaderboard(parent, metric, top))
            except FidBenchError as err:
                lines.append(f"no leaderboard: {err}")
        print("\n".join(lines), flush=True)
        if summary["n_children_finished"]:
            self._compare_top(parent, metric)
        failures = summary.get("failures") or []
        if log_sweep_report(parent.tracking_uri, parent.run_id, metric=metric, failures=failures):
            print(
                f"report: {sweep_report.REPORT} of MLflow run {parent.run_id} (its Artifacts tab)", flush=True
            )
        if failures:
            total = summary["n_children_finished"] + summary["n_children_failed"]
            print(failures_report("jobs", failures, total), file=sys.stderr, flush=True)
            # scripts and CI must see it; SystemExit passes through Hydra's callback wrapper
            raise SystemExit(PARTLY_FAILED_EXIT)

    @staticmethod
    def _compare_top(parent: ParentRun, metric: str) -> None:
        """The parent gets one figure overlaying the curves of its five best children."""
        try:
            compare_children(
                parent.run_id, parent.sweep_dir / "compare_top5.png", metric=metric, top=5,
                tracking_uri=parent.tracking_uri,
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a figure must not fail a finished sweep
            log.warning("no comparison figure for parent run %s: %s", parent.run_id, first_line(err))

    def _close_interrupted(self) -> None:
        parent, self.parent = self.parent, None
        if parent is None or self._config is None:
            return
        try:
            finish_parent_run(self._config, parent, interrupted=True)
        except Exception as err:  # noqa: BLE001 - best effort at interpreter exit
            log.error("MLflow parent run %s left open: %s", parent.run_id, first_line(err))
