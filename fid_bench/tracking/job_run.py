"""``tracked_run(spec)``: the MLflow run every job goes through, and what a job logs into it.

``tracked_run``: on entry: connect to the store, make sure the experiment exists, start the job's run (nested under
the multirun's parent run when there is one), log the resolved config as params and as
``config.yaml``. On exit the run is always ended (``logged_run.closing_run``). ``JobRunSpec`` holds
everything the run needs, read once from the config at the top of the job (``JobRunSpec.of_config``). ``log_job_inputs`` logs what the job read before it trains (counts,
skipped rows, the audit, the rows of each fold as dataset inputs); ``log_job_outcome`` what
``evaluation.fit_and_score`` found (metrics, predictions and plots, files, the model, the
description, the sweep report of a job with held-out folds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from fid_bench.tracking.kinds import RunKind
from fid_bench.tracking.lineage import DatasetPart, data_source, fold_parts
from fid_bench.tracking.logged_run import SilentRun, TrackedRun, closing_run, distributed_rank
from fid_bench.tracking.logged_scores import log_drawn_scores
from fid_bench.tracking.logged_values import flatten_config, resolved_config
from fid_bench.tracking.run_factory import start_run
from fid_bench.tracking.run_tags import headline_note, job_tags_of_config, run_name_of
from fid_bench.tracking.store import TrackingSettings, original_cwd
from fid_bench.tracking.sweep_files import multirun_parent, multirun_sweep_dir
from fid_bench.tracking.ui import NOTE_TAG

if TYPE_CHECKING:
    from fid_bench.data.job_inputs import JobInputs
    from fid_bench.evaluation.fit_and_score import JobOutcome
    from fid_bench.tracking.logged_run import Report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRunSpec:
    """What a job's run needs: where it goes, its tags (``run_tags.job_tags``), the resolved config it
    logs, and the multirun's sweep dir (where its parent run is recorded; None outside a multirun)."""

    tracking: TrackingSettings
    tags: Mapping[str, str]
    config: Mapping[str, Any] = field(default_factory=dict)
    sweep_dir: Path | None = None

    @property
    def name(self) -> str:
        return run_name_of(self.tags)

    @classmethod
    def of_config(cls, cfg: DictConfig, *, track: str) -> JobRunSpec:
        """Everything read from the composed config and the running Hydra job; ``track``: the one
        the job's detector declares (``contract.detector_track``)."""
        return cls(
            tracking=TrackingSettings.of_config(cfg.get("tracking"), original_cwd()),
            tags=job_tags_of_config(cfg, track=track),
            config=resolved_config(cfg),
            sweep_dir=multirun_sweep_dir(),
        )


@contextmanager
def tracked_run(spec: JobRunSpec, *, parent_run_id: str | None = None) -> Iterator[TrackedRun]:
    """Run one job inside an MLflow run (see the module docstring).

    ``parent_run_id`` nests the run explicitly; by default a job of a Hydra multirun finds its
    parent in the sweep dir (``ParentRunCallback``). In a distributed (DDP) job only rank 0 logs:
    the other ranks re-run the same entry point and get a run that records nothing.
    """
    if distributed_rank() > 0:
        yield SilentRun()  # type: ignore[misc]
        return
    experiment = spec.tracking.open()
    if parent_run_id is None:
        parent_run_id = multirun_parent(spec.sweep_dir, experiment.uri)
    tags = dict(spec.tags)
    log.info("%s: track=%s (classifier from the %s)", spec.name, tags["track"], tags["classifier_source"])
    run = start_run(
        RunKind.JOB,
        experiment,
        spec.name,
        tags,
        parent_run_id,
        active=True,
        # CPU, memory (and GPU with pynvml) every few seconds, for long runs: tracking.system_metrics
        system_metrics=spec.tracking.system_metrics,
    )
    with closing_run(run):
        run.log_params(flatten_config(spec.config))
        run.log_text(OmegaConf.to_yaml(OmegaConf.create(dict(spec.config))), "config.yaml")
        yield run


def log_job_inputs(
    run: TrackedRun,
    inputs: JobInputs,
    audit: tuple[Report, Mapping[str, Report]] | None = None,
    *,
    data_root: str | None = None,
    final: bool = True,
) -> None:
    """What the job read, logged before it trains: counts and skipped rows, the audit (its report
    and each source's, ``data=multi``), and the rows of each fold as MLflow dataset inputs (a
    search trial's without the test rows it never reads)."""
    samples = inputs.samples
    run.log_samples(samples)
    if audit is not None:
        run.log_audit(*audit)
    run.log_datasets(
        fold_parts(samples.table, inputs.folds, name=samples.name, source=data_source(data_root), final=final)
    )
    if inputs.extra:  # each extra set's rows as read: an input of the run
        run.log_datasets(
            [DatasetPart("extra", x.name, data_source(x.root), rows) for x, rows in inputs.extra]
        )


def log_job_outcome(
    run: TrackedRun,
    outcome: JobOutcome,
    *,
    log_model: bool = False,
    sweep_report_metric: str | None = None,
) -> None:
    """What ``fit_and_score`` found: its files, metrics, predictions and drawn plots, the model
    (``log_model``), the run's description (headline figures, final runs) and, with
    ``sweep_report_metric``, the report of the job's held-out folds ranked by it."""
    for path, folder in outcome.files:
        run.log_artifact(path, folder)
    run.log_metrics(outcome.logged)
    if outcome.scores is not None:  # a final run: its predictions, plots and description
        log_drawn_scores(run, outcome.scores, outcome.plot_dir, outcome.plot_errors)
    if log_model:
        run.log_predictor(outcome.predictor)
    if outcome.scores is not None:
        run.set_tags({NOTE_TAG: headline_note(outcome.metrics)})
    if sweep_report_metric is not None and isinstance(run, TrackedRun):
        from fid_bench.tracking.sweep_report import log_sweep_report

        log_sweep_report(run.client.tracking_uri, run.run_id, metric=sweep_report_metric, children=False)
