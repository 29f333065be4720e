"""One benchmark job: samples -> folds -> detector -> scores -> metrics -> MLflow."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from fid_bench.audit import SKIP_WARNING, audit_samples, audit_sources
from fid_bench.data.readers import read_samples
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.generalisation import beyond_holdout, prefixed
from fid_bench.evaluation.held_out import held_out_metrics
from fid_bench.evaluation.loso import run_source_folds
from fid_bench.evaluation.metrics import aggregate_folds, evaluate_scores
from fid_bench.features.shard import extract_shard
from fid_bench.jobs.job_spec import JobSpec
from fid_bench.tracking.job_run import tracked_run
from fid_bench.tracking.lineage import DatasetPart, data_source, fold_parts
from fid_bench.tracking.logged_run import TrackedRun
from fid_bench.tracking.logged_scores import log_scores
from fid_bench.tracking.run_tags import headline_note
from fid_bench.tracking.sweep_report import log_sweep_report
from fid_bench.tracking.ui import NOTE_TAG

if TYPE_CHECKING:
    from fid_bench.contract import RunLogger
    from fid_bench.data.samples import Samples
    from fid_bench.features.shard import Shard

log = logging.getLogger(__name__)


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

    The config is read once, into a ``JobSpec``; the job's MLflow run is opened and its samples
    read (``samples`` reuses a data set already read; ``parent_run_id`` nests the run); then a
    shard of a split extraction goes to ``run_shard``, any other job to ``run_experiment`` (the
    other keywords are its own).
    """
    if holdout not in ("test", "val"):
        raise FidBenchError(f"holdout must be 'test' or 'val', got {holdout!r}")
    spec = JobSpec.of_config(cfg)  # bad shard or extra-set values: one line before any run exists
    with tracked_run(spec.run, parent_run_id=parent_run_id) as run:
        if samples is None:
            samples = read_samples(spec.data)
        run.log_samples(samples)
        if spec.shard is not None:
            run_shard(spec.shard, samples, run)
            return math.nan
        metrics = run_experiment(spec, samples, run, holdout=holdout, on_run=on_run, job_dir=job_dir)
    if spec.optimized_metric not in metrics:
        raise FidBenchError(
            f"optimized_metric={spec.optimized_metric!r} was not computed; choose one of {sorted(metrics)}"
        )
    return float(metrics[spec.optimized_metric])


def run_shard(shard: Shard, samples: Samples, run: TrackedRun) -> None:
    """One shard of a split extraction (``features.shard``): fill the cache and log its stats; no
    model, no metric (the job returns NaN; see ``features.shard``)."""
    run.set_tags({"features_shard": f"{shard.index}/{shard.count}"})
    run.log_metrics(extract_shard(shard, samples))


def run_experiment(
    spec: JobSpec,
    samples: Samples,
    run: TrackedRun,
    *,
    holdout: str = "test",
    on_run: Callable[[TrackedRun], RunLogger] | None = None,
    job_dir: Path | None = None,
) -> dict[str, float]:
    """Fit and score the spec's detector on every fold of ``samples``, logged to ``run``; the metrics.

    The keywords serve hyperparameter search (``fid_bench.jobs.search``); the defaults are a plain job.
    ``holdout="val"`` scores the validation rows in place of the test rows, which are never
    predicted, logs the metrics with a ``val_`` prefix and skips predictions and plots;
    ``on_run`` turns the run into the logger the detector sees (e.g. to watch per-epoch metrics);
    ``job_dir`` replaces the Hydra output folder for the detector's files (e.g. checkpoints), so
    jobs sharing one Hydra run cannot overwrite each other's.
    """
    final = holdout == "test"  # a search trial (holdout="val") skips everything that reads test rows
    plan, settings, detector = spec.folds, spec.held_out, spec.detector
    table = samples.table

    # 1. the inputs: the job the detector sees, the audit and the folds (logged before any training)
    job = spec.job(
        samples,
        output_dir=job_dir if job_dir is not None else output_dir(),
        logger=on_run(run) if on_run is not None else run,
    )
    audit = audit_samples(samples, **spec.audit) if final and spec.audit is not None else None
    # data=multi: each source audited on its own too (a shortcut inside one source is named with it)
    audit_parts = audit_sources(samples, **spec.audit) if audit is not None and spec.multi_source else {}
    folds = plan.job_folds(table)
    source_folds = plan.source_folds(table, folds, final=final)
    if audit is not None:
        run.log_audit(audit, audit_parts)
        for warning in [*audit.warnings, *(w for part in audit_parts.values() for w in part.warnings)]:
            # skipped rows (a source's warning starts with its name): log_samples told them in one line
            if not (warning.startswith(SKIP_WARNING) or warning.split(": ", 1)[-1].startswith(SKIP_WARNING)):
                log.warning("audit: %s", warning)
    source = data_source(spec.data_root)
    run.log_datasets(fold_parts(table, folds, name=samples.name, source=source, final=final))
    if not final:
        # the validation rows stand in for the test rows, so a search never sees test labels
        folds = [dataclasses.replace(fold, test=fold.val) for fold in folds]

    # 2. fit and score: the source folds first, so the model of the job's own (last) fold, trained
    # on every source, is the one logged, predicted with and scored beyond the hold-out
    detector.setup(job)
    source_metrics, source_files = (
        run_source_folds(detector, job, source_folds, settings, final=final) if source_folds else ({}, [])
    )
    scores, per_fold = [], []
    # K-fold and leave-one-group-out jobs fit one model per fold: a bar on a terminal
    shown = folds if len(folds) == 1 or not sys.stderr.isatty() else tqdm(folds, desc="folds", unit="fold")
    for fold in shown:
        fold_scores = detector.fit_predict(job, fold)
        scores.append(fold_scores)
        if final:  # with per-group metrics and bootstrap intervals, as ensembles and imports log them
            per_fold.append(held_out_metrics(fold_scores, settings))
        else:
            per_fold.append(evaluate_scores(fold_scores, calibration_bins=settings.calibration_bins))
    metrics = aggregate_folds(per_fold)
    if plan.leave_one_group_out:  # each fold's metrics under logo/<held-out group>/
        for fold, fold_metrics in zip(folds, per_fold, strict=True):
            metrics.update(prefixed(f"logo/{fold.name}", fold_metrics))
    metrics.update(source_metrics)
    logged = metrics if final else {f"val_{k}": v for k, v in metrics.items()}
    extra = detector.extra_metrics()
    metrics.update(extra)
    predictor = detector.predictor() if final or spec.log_model else None
    beyond = None
    if final:
        # extra data sets and perturbations use the model of the last fold on that fold's test rows
        beyond = beyond_holdout(
            spec.extra,
            spec.perturb,
            predictor,
            table.iloc[folds[-1].test],
            metrics["roc_auc"],
            job.output_dir / "eval",
            spec.normalise_extra,
        )

    # 3. the results, logged
    for path in source_files:
        run.log_artifact(path, "loso")
    run.log_metrics({**logged, **extra})
    if final:
        log_scores(
            run, pd.concat(scores, ignore_index=True), metrics, calibration_bins=settings.calibration_bins
        )
    if beyond is not None:
        if beyond.extra_rows:  # each extra set's rows as read: an input of the run
            run.log_datasets(
                [DatasetPart("extra", x.name, data_source(x.root), rows) for x, rows in beyond.extra_rows]
            )
        for path in beyond.files:
            run.log_artifact(path, "robustness")
        metrics.update(beyond.metrics)
        run.log_metrics(beyond.metrics)
    if spec.log_model:
        run.log_predictor(predictor)
    if final:
        # the run's Description in the UI: its headline figures, rounded
        run.set_tags({NOTE_TAG: headline_note(metrics)})
    held_out_folds = plan.leave_one_group_out or plan.leave_one_source_out
    if final and held_out_folds and isinstance(run, TrackedRun):
        log_sweep_report(run.client.tracking_uri, run.run_id, metric=spec.optimized_metric, children=False)
    log.info(
        "%s%s",
        "validation " if not final else "",
        ", ".join(
            f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if "/" not in k and not k.startswith("n_")
        ),
    )
    return metrics
