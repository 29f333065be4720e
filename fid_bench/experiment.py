"""One benchmark job: samples -> folds -> detector -> scores -> metrics -> MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from fid_bench.detector import Detector, Job
from fid_bench.errors import FidBenchError

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


def run_job(cfg: DictConfig) -> float:
    """Run one job of the grid and return ``cfg.optimized_metric`` on held-out data."""
    from fid_bench.data.splits import make_folds
    from fid_bench.evaluation.metrics import aggregate_folds, evaluate_scores
    from fid_bench.tracking.run import tracked_run

    with tracked_run(cfg) as run:
        samples = load_samples(cfg)
        run.log_samples(samples)
        folds = make_folds(
            samples.table,
            val_fraction=cfg.data.val_fraction,
            test_fraction=cfg.data.test_fraction,
            cv_folds=cfg.cv.folds,
            seed=cfg.seed,
        )
        detector: Detector = instantiate(cfg.classifier)
        job = Job(
            cfg=cfg,
            samples=samples,
            balance=instantiate(cfg.balance),
            cache_dir=Path(cfg.features.cache_dir).expanduser(),
            output_dir=output_dir(),
            logger=run,
        )
        detector.setup(job)
        scores, per_fold = [], []
        for fold in folds:
            fold_scores = detector.fit_predict(job, fold)
            scores.append(fold_scores)
            per_fold.append(evaluate_scores(fold_scores))
        metrics = aggregate_folds(per_fold)
        metrics.update(detector.extra_metrics())
        run.log_metrics(metrics)
        run.log_scores(pd.concat(scores, ignore_index=True), metrics)
        if cfg.tracking.log_model:
            run.log_predictor(detector.predictor())
        log.info(
            "%s: %s",
            cfg.optimized_metric,
            ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if not k.startswith("n_")),
        )
    if cfg.optimized_metric not in metrics:
        raise FidBenchError(
            f"optimized_metric={cfg.optimized_metric!r} was not computed; choose one of {sorted(metrics)}"
        )
    return float(metrics[cfg.optimized_metric])
