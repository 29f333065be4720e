"""One benchmark job: samples -> folds -> detector -> scores -> metrics -> MLflow."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from fid_bench.detector import Detector, Job
from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from fid_bench.data.samples import Samples
    from fid_bench.detector import RunLogger
    from fid_bench.tracking.run import TrackedRun

log = logging.getLogger(__name__)


def load_samples(cfg: DictConfig):
    """Read the configured data set into a samples table (bad rows counted in ``skipped``)."""
    reader = instantiate(cfg.data.reader)
    return reader.read()


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

    The keywords serve hyperparameter search (``fid_bench.search``); the defaults are a plain job.
    ``holdout="val"`` scores the validation rows in place of the test rows, which are never
    predicted, logs the metrics with a ``val_`` prefix and skips predictions and plots;
    ``parent_run_id`` nests the MLflow run; ``samples`` reuses a data set already read;
    ``on_run`` turns the run into the logger the detector sees (e.g. to watch per-epoch metrics);
    ``job_dir`` replaces the Hydra output folder for the detector's files (e.g. checkpoints), so
    jobs sharing one Hydra run cannot overwrite each other's.
    """
    from fid_bench.data.splits import make_folds
    from fid_bench.evaluation.metrics import aggregate_folds, evaluate_scores
    from fid_bench.tracking.run import tracked_run

    if holdout not in ("test", "val"):
        raise FidBenchError(f"holdout must be 'test' or 'val', got {holdout!r}")
    with tracked_run(cfg, parent_run_id=parent_run_id) as run:
        if samples is None:
            samples = load_samples(cfg)
        run.log_samples(samples)
        folds = make_folds(
            samples.table,
            val_fraction=cfg.data.val_fraction,
            test_fraction=cfg.data.test_fraction,
            cv_folds=cfg.cv.folds,
            seed=cfg.seed,
        )
        if holdout == "val":
            # the validation rows stand in for the test rows, so a search never sees test labels
            folds = [dataclasses.replace(fold, test=fold.val) for fold in folds]
        detector: Detector = instantiate(cfg.classifier)
        job = Job(
            cfg=cfg,
            samples=samples,
            balance=instantiate(cfg.balance),
            cache_dir=Path(cfg.features.cache_dir).expanduser(),
            output_dir=job_dir if job_dir is not None else output_dir(),
            logger=on_run(run) if on_run is not None else run,
        )
        detector.setup(job)
        scores, per_fold = [], []
        for fold in folds:
            fold_scores = detector.fit_predict(job, fold)
            scores.append(fold_scores)
            per_fold.append(evaluate_scores(fold_scores))
        metrics = aggregate_folds(per_fold)
        logged = metrics if holdout == "test" else {f"val_{k}": v for k, v in metrics.items()}
        extra = detector.extra_metrics()
        metrics.update(extra)
        run.log_metrics({**logged, **extra})
        if holdout == "test":
            run.log_scores(pd.concat(scores, ignore_index=True), metrics)
        if cfg.tracking.log_model:
            run.log_predictor(detector.predictor())
        log.info(
            "%s%s: %s",
            "validation " if holdout == "val" else "",
            cfg.optimized_metric,
            ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if not k.startswith("n_")),
        )
    if cfg.optimized_metric not in metrics:
        raise FidBenchError(
            f"optimized_metric={cfg.optimized_metric!r} was not computed; choose one of {sorted(metrics)}"
        )
    return float(metrics[cfg.optimized_metric])
