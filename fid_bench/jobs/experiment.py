"""One benchmark job: config -> spec -> run -> inputs -> audit -> fit and score -> logged outcome."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from fid_bench.audit import audit_job
from fid_bench.contract import Job
from fid_bench.data.job_inputs import read_job_inputs
from fid_bench.data.readers import read_samples
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.fit_and_score import fit_and_score
from fid_bench.jobs.job_spec import JobSpec
from fid_bench.tracking.job_run import log_job_inputs, log_job_outcome, tracked_run

if TYPE_CHECKING:
    from fid_bench.contract import RunLogger
    from fid_bench.data.samples import Samples
    from fid_bench.tracking.logged_run import TrackedRun


def load_samples(cfg: DictConfig) -> Samples:
    """Read the configured data set into a samples table (bad rows counted in ``skipped``)."""
    return read_samples(cfg.data)


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # composed outside a Hydra app (tests, notebooks)
        return Path.cwd()


def run_job(
    cfg: DictConfig,
    *,
    holdout: str = "test",
    parent_run_id: str | None = None,
    samples: Samples | None = None,
    on_run: Callable[[TrackedRun], RunLogger] | None = None,
    job_dir: Path | None = None,
) -> float:
    """Run one job of the grid and return ``cfg.optimized_metric`` on held-out data.

    The config is read once, into a ``JobSpec``; the job's MLflow run is opened; inside it the
    inputs are read (samples, folds, extra sets) and audited and logged before any training, the
    detector is fitted and scored on every fold, and the outcome is logged.

    The keywords serve hyperparameter search (``fid_bench.jobs.search``); the defaults are a plain
    job. ``holdout="val"`` scores the validation rows in place of the test rows, which are never
    predicted, logs the metrics with a ``val_`` prefix and skips the audit, extra sets,
    perturbations, predictions and plots; ``parent_run_id`` nests the run; ``samples`` reuses a
    data set already read; ``on_run`` turns the run into the logger the detector sees (e.g. to
    watch per-epoch metrics); ``job_dir`` replaces the Hydra output folder for the detector's files
    (e.g. checkpoints), so jobs sharing one Hydra run cannot overwrite each other's. A shard of a
    split extraction is its own entry point (``jobs.shard_job``).
    """
    if holdout not in ("test", "val"):
        raise FidBenchError(f"holdout must be 'test' or 'val', got {holdout!r}")
    final = holdout == "test"  # a search trial (holdout="val") skips everything that reads test rows
    spec = JobSpec.of_config(cfg)  # bad values that need no data: one line before any run exists
    with tracked_run(spec.run, parent_run_id=parent_run_id) as run, tempfile.TemporaryDirectory() as scratch:
        # 1. the inputs: read, audited and logged before any training
        inputs = read_job_inputs(spec.data, spec.folds, spec.extra, samples=samples, final=final)
        audit = (
            audit_job(inputs.samples, spec.audit, per_source=spec.multi_source)
            if final and spec.audit is not None
            else None
        )
        log_job_inputs(run, inputs, audit, data_root=spec.data_root, final=final)
        # 2. fit and score on every fold
        job = Job(
            samples=inputs.samples,
            balance=spec.balance,
            cache_dir=spec.cache_dir,
            output_dir=job_dir if job_dir is not None else output_dir(),
            logger=on_run(run) if on_run is not None else run,
        )
        outcome = fit_and_score(
            spec.detector,
            job,
            inputs,
            spec.evaluation,
            final=final,
            keep_predictor=spec.log_model,
            plot_dir=Path(scratch),
            title=spec.run.name,
        )
        # 3. the outcome, logged; a job with held-out folds also gets its own sweep report
        held_out_folds = spec.folds.leave_one_group_out or spec.folds.leave_one_source_out
        log_job_outcome(
            run,
            outcome,
            log_model=spec.log_model,
            sweep_report_metric=spec.optimized_metric if final and held_out_folds else None,
        )
    if spec.optimized_metric not in outcome.metrics:
        raise FidBenchError(
            f"optimized_metric={spec.optimized_metric!r} was not computed; choose one of {sorted(outcome.metrics)}"
        )
    return float(outcome.metrics[spec.optimized_metric])
