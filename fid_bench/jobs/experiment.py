"""One benchmark job: samples -> folds -> detector -> scores -> metrics -> MLflow."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from fid_bench.audit import SKIP_WARNING, audit_samples, audit_sources
from fid_bench.contract import Detector, Job
from fid_bench.data.readers import read_samples
from fid_bench.data.splits import leave_one_group_out, leave_one_source_out, make_folds
from fid_bench.errors import FidBenchError
from fid_bench.evaluation import generalisation, loso
from fid_bench.evaluation.generalisation import prefixed
from fid_bench.evaluation.held_out import HeldOutSettings, held_out_metrics
from fid_bench.evaluation.metrics import aggregate_folds, evaluate_scores
from fid_bench.features.shard import extract_shard
from fid_bench.jobs.job_spec import FoldPlan, JobSpec
from fid_bench.tracking.job_run import tracked_run
from fid_bench.tracking.lineage import DatasetPart, data_source, fold_parts
from fid_bench.tracking.logged_run import TrackedRun
from fid_bench.tracking.logged_scores import log_scores
from fid_bench.tracking.run_tags import headline_note
from fid_bench.tracking.sweep_report import log_sweep_report
from fid_bench.tracking.ui import NOTE_TAG

if TYPE_CHECKING:
    from fid_bench.contract import Predictor, RunLogger
    from fid_bench.data.samples import Samples
    from fid_bench.data.splits import Fold
    from fid_bench.evaluation.generalisation import ExtraSet
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


def make_job_folds(plan: FoldPlan, samples: Samples) -> list[Fold]:
    """Hold-out, K-fold or leave-one-group-out folds, as the plan says."""
    if plan.leave_one_group_out:
        if plan.folds:
            raise FidBenchError("cv.folds and cv.leave_one_group_out exclude each other; set one of them")
        return leave_one_group_out(
            samples.table, val_fraction=plan.val_fraction, test_fraction=plan.test_fraction, seed=plan.seed
        )
    return make_folds(
        samples.table,
        val_fraction=plan.val_fraction,
        test_fraction=plan.test_fraction,
        cv_folds=plan.folds,
        seed=plan.seed,
    )


def make_source_folds(plan: FoldPlan, samples: Samples, folds: list[Fold], final: bool) -> list[Fold]:
    """Leave-one-source-out folds when ``cv.leave_one_source_out`` is set, else none.

    A search trial (``final`` False) leaves the first fold's test rows out of them, so selecting by
    ``loso/*`` never sees the rows the final run is tested on. Fold indices follow the job's own folds.
    """
    if not plan.leave_one_source_out:
        return []
    if plan.leave_one_group_out:
        raise FidBenchError(
            "cv.leave_one_group_out and cv.leave_one_source_out exclude each other; set one of them"
        )
    rows = None
    if not final:
        rows = np.setdiff1d(np.arange(len(samples.table)), folds[0].test)
    source_folds = leave_one_source_out(
        samples.table, val_fraction=plan.val_fraction, seed=plan.seed, rows=rows
    )
    return [dataclasses.replace(f, index=len(folds) + f.index) for f in source_folds]


def run_source_folds(
    detector: Detector,
    job: Job,
    source_folds: list[Fold],
    settings: HeldOutSettings,
    final: bool,
    run: TrackedRun,
) -> dict[str, float]:
    """Train without each source and test on it: ``loso/<source>/*``, ``loso/mean_roc_auc``,
    ``loso/worst_roc_auc``; a final run also logs the per-source table and bar plot (``loso/``)."""
    if not getattr(detector, "supports_source_folds", True):
        raise FidBenchError(
            f"cv.leave_one_source_out is not supported by classifier={detector.name}; "
            "use the features track (e.g. classifier=logreg with a frozen model)"
        )
    per_source: dict[str, dict[str, float]] = {}
    tests: dict[str, pd.DataFrame] = {}
    out: dict[str, float] = {}
    # one model per held-out source: a bar on a terminal
    shown = source_folds if not sys.stderr.isatty() else tqdm(source_folds, desc="sources", unit="source")
    for fold in shown:
        fold_scores = detector.fit_predict(job, fold)
        if final:
            m = held_out_metrics(fold_scores, settings)
        else:
            m = evaluate_scores(fold_scores, calibration_bins=settings.calibration_bins)
        per_source[fold.name] = m
        tests[fold.name] = fold_scores[fold_scores["split"] == "test"]
        out.update(loso.source_metrics(fold.name, m))
        log.info("leave-one-source-out: %s held out, roc_auc=%.4f", fold.name, m.get("roc_auc", float("nan")))
    out.update(loso.summary(per_source))
    if final:
        work = job.output_dir / "loso"
        work.mkdir(parents=True, exist_ok=True)
        table = loso.source_table(per_source, tests)
        table.to_csv(work / "per_source.csv", index=False)
        (work / "per_source.md").write_text(loso.table_markdown(table) + "\n")
        loso.bar_plot(table, work / "roc_auc_per_source.png")
        # every held-out row's score: two runs on the same sources can be compared pair-wise
        pd.concat([t.assign(source=name) for name, t in tests.items()], ignore_index=True).to_csv(
            work / "scores.csv", index=False
        )
        for name in ("per_source.csv", "per_source.md", "roc_auc_per_source.png", "scores.csv"):
            run.log_artifact(work / name, "loso")
    return out


def log_audit(settings: dict[str, Any], samples: Samples, run: TrackedRun, *, per_source: bool) -> None:
    """Audit the data before training: a few metrics, the report as artifacts, warnings in the log.
    ``settings``: those of ``audit_samples``; ``per_source`` (data=multi) audits each source on its own too."""
    import tempfile

    report = audit_samples(samples, **settings)
    run.log_metrics({f"audit/{k}": v for k, v in report.metrics().items()})
    # data=multi: each source audited on its own too (a shortcut inside one source is named with it)
    sources = audit_sources(samples, **settings) if per_source else {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in report.write(Path(tmp)):
            run.log_artifact(path, "audit")
        for name, part in sources.items():
            run.log_metrics({f"audit/{name}/{k}": v for k, v in part.metrics().items()})
            for path in part.write(Path(tmp) / name):
                run.log_artifact(path, f"audit/{name}")
    warnings = list(report.warnings)
    warnings += [w for part in sources.values() for w in part.warnings]
    for warning in warnings:
        if warning.split(": ", 1)[-1].startswith(SKIP_WARNING) or warning.startswith(SKIP_WARNING):
            continue  # the run already said which rows were skipped (one line, see log_samples)
        log.warning("audit: %s", warning)


def per_group_fold(folds: list[Fold], per_fold: list[dict[str, float]]) -> dict[str, float]:
    """Leave-one-group-out: each fold's metrics under ``logo/<held-out group>/``."""
    out: dict[str, float] = {}
    for fold, m in zip(folds, per_fold, strict=True):
        out.update(prefixed(f"logo/{fold.name}", m))
    return out


def beyond_holdout(
    spec: JobSpec, predictor: Predictor, test_rows: pd.DataFrame, metrics: dict, run: TrackedRun, job: Job
) -> dict[str, float]:
    """``eval.extra`` data sets and ``eval.perturb`` perturbations, each under its own metric prefix."""
    out: dict[str, float] = {}
    work = job.output_dir / "eval"
    if spec.extra:

        def log_extra(extra: ExtraSet, table: pd.DataFrame) -> None:
            run.log_datasets([DatasetPart("extra", extra.name, data_source(extra.root), table)])

        found, _ = generalisation.extra_set_metrics(
            spec.extra, predictor, work, normalise=spec.normalise_extra, on_read=log_extra
        )
        out.update(found)
    if spec.perturb:
        perturbed, curve = generalisation.perturbation_metrics(list(spec.perturb), test_rows, predictor, work)
        out.update(perturbed)
        curve.to_csv(work / "robustness.csv", index=False)
        run.log_artifact(work / "robustness.csv", "robustness")
        plot = generalisation.robustness_plot(curve, metrics["roc_auc"], work / "robustness.png")
        run.log_artifact(plot, "robustness")
    return out


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
    if final and spec.audit is not None:
        log_audit(spec.audit, samples, run, per_source=spec.multi_source)
    folds = make_job_folds(plan, samples)
    source = data_source(spec.data_root)
    run.log_datasets(fold_parts(samples.table, folds, name=samples.name, source=source, final=final))
    source_folds = make_source_folds(plan, samples, folds, final)
    if not final:
        # the validation rows stand in for the test rows, so a search never sees test labels
        folds = [dataclasses.replace(fold, test=fold.val) for fold in folds]
    job = spec.job(
        samples,
        output_dir=job_dir if job_dir is not None else output_dir(),
        logger=on_run(run) if on_run is not None else run,
    )
    detector.setup(job)
    calibration_bins = settings.calibration_bins
    # the source folds first: the model of the job's own (last) fold, trained on every source,
    # is the one logged, predicted with and scored on eval.extra
    source_metrics = (
        run_source_folds(detector, job, source_folds, settings, final, run) if source_folds else {}
    )
    scores, per_fold = [], []
    # K-fold and leave-one-group-out jobs fit one model per fold: a bar on a terminal
    shown = folds if len(folds) == 1 or not sys.stderr.isatty() else tqdm(folds, desc="folds", unit="fold")
    for fold in shown:
        fold_scores = detector.fit_predict(job, fold)
        scores.append(fold_scores)
        if final:  # with per-group metrics and bootstrap intervals, as ensembles and imports log them
            fold_metrics = held_out_metrics(fold_scores, settings)
        else:
            fold_metrics = evaluate_scores(fold_scores, calibration_bins=calibration_bins)
        per_fold.append(fold_metrics)
    metrics = aggregate_folds(per_fold)
    if plan.leave_one_group_out:
        metrics.update(per_group_fold(folds, per_fold))
    metrics.update(source_metrics)
    logged = metrics if final else {f"val_{k}": v for k, v in metrics.items()}
    extra = detector.extra_metrics()
    metrics.update(extra)
    run.log_metrics({**logged, **extra})
    if final:
        log_scores(run, pd.concat(scores, ignore_index=True), metrics, calibration_bins=calibration_bins)
    if final or spec.log_model:
        predictor = detector.predictor()
    if final:
        # extra data sets and perturbations use the model of the last fold on that fold's test rows
        beyond = beyond_holdout(spec, predictor, samples.table.iloc[folds[-1].test], metrics, run, job)
        metrics.update(beyond)
        run.log_metrics(beyond)
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
