"""Fit and score one job's detector on its folds: the metrics, scores, plots and files a run logs.

``fit_and_score`` is the middle of every job (``fid_bench.jobs.experiment.run_job``): its inputs
are read (``data.job_inputs``), its outcome is logged (``tracking.job_run.log_job_outcome``); here
nothing is read from disk by name and nothing is logged. The source folds run first, so the model
of the job's own (last) fold, trained on every source, is the one kept, predicted with and scored
beyond the hold-out.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fid_bench.evaluation import plots
from fid_bench.evaluation.generalisation import beyond_holdout, prefixed
from fid_bench.evaluation.held_out import HeldOutSettings, fold_metrics
from fid_bench.evaluation.loso import run_source_folds
from fid_bench.evaluation.metrics import aggregate_folds

if TYPE_CHECKING:
    from fid_bench.contract import Detector, Job, Predictor
    from fid_bench.data.job_inputs import JobInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """How a job is scored beyond fitting: the held-out metrics' settings, whether the folds are
    leave-one-group-out (each fold's metrics then also logged under ``logo/<group>/``), the
    ``eval.perturb`` perturbations and the ``eval.normalise_extra`` re-encoding of extra sets."""

    held_out: HeldOutSettings
    leave_one_group_out: bool = False
    perturb: tuple[str, ...] = ()
    normalise_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What ``fit_and_score`` found.

    ``metrics``: every metric (the optimised one among them); ``logged``: what the run logs as
    metrics (a search trial's carry a ``val_`` prefix); ``scores``: every fold's scores (final runs);
    ``predictor``: the last fold's model when kept; ``files``: (path, artifact folder) to log;
    ``plot_dir`` holds the score plots drawn, ``plot_errors`` the ones that could not be."""

    metrics: dict[str, float]
    logged: dict[str, float]
    scores: pd.DataFrame | None = None
    predictor: Predictor | None = None
    files: list[tuple[Path, str]] = field(default_factory=list)
    plot_dir: Path | None = None
    plot_errors: list[str] = field(default_factory=list)


def fit_and_score(
    detector: Detector,
    job: Job,
    inputs: JobInputs,
    evaluation: Evaluation,
    *,
    final: bool = True,
    keep_predictor: bool = False,
    plot_dir: Path | None = None,
    title: str = "",
) -> JobOutcome:
    """Fit ``detector`` on every fold of ``inputs`` (source folds first), score the held-out rows,
    and, for a final run, everything beyond them (extra sets, perturbations) and the score plots.

    ``final`` False (a search trial) scores the validation rows in place of the test rows, which are
    never predicted; ``keep_predictor`` keeps the last fold's model for a trial too (to log it);
    ``plot_dir`` receives ``roc.png`` and friends (final runs), titled ``title``.
    """
    settings = evaluation.held_out
    folds = inputs.folds
    if not final:
        # the validation rows stand in for the test rows, so a search never sees test labels
        folds = [dataclasses.replace(fold, test=fold.val) for fold in folds]

    detector.setup(job)
    source_metrics, source_files = (
        run_source_folds(detector, job, inputs.source_folds, settings, final=final)
        if inputs.source_folds
        else ({}, [])
    )
    scores, per_fold = [], []
    # K-fold and leave-one-group-out jobs fit one model per fold: a bar on a terminal
    shown = folds
    if len(folds) > 1 and sys.stderr.isatty():
        from tqdm.auto import tqdm

        shown = tqdm(folds, desc="folds", unit="fold")
    for fold in shown:
        fold_scores = detector.fit_predict(job, fold)
        scores.append(fold_scores)
        per_fold.append(fold_metrics(fold_scores, settings, final=final))
    metrics = aggregate_folds(per_fold)
    if evaluation.leave_one_group_out:  # each fold's metrics under logo/<held-out group>/
        for fold, of_fold in zip(folds, per_fold, strict=True):
            metrics.update(prefixed(f"logo/{fold.name}", of_fold))
    metrics.update(source_metrics)
    logged = metrics if final else {f"val_{k}": v for k, v in metrics.items()}
    extra = detector.extra_metrics()
    metrics.update(extra)
    outcome = JobOutcome(
        metrics=metrics,
        logged={**logged, **extra},
        predictor=detector.predictor() if final or keep_predictor else None,
        files=[(path, "loso") for path in source_files],
    )
    if final:
        outcome.scores = pd.concat(scores, ignore_index=True)
        # extra data sets and perturbations use the model of the last fold on that fold's test rows
        beyond = beyond_holdout(
            inputs.extra,
            evaluation.perturb,
            outcome.predictor,
            inputs.samples.table.iloc[folds[-1].test],
            metrics["roc_auc"],
            job.output_dir / "eval",
            evaluation.normalise_extra,
        )
        metrics.update(beyond.metrics)
        outcome.logged.update(beyond.metrics)
        outcome.files += [(path, "robustness") for path in beyond.files]
        if plot_dir is not None:
            threshold = metrics.get("threshold")
            outcome.plot_dir = plot_dir
            outcome.plot_errors = plots.score_plots(
                outcome.scores,
                plot_dir,
                title=title,
                threshold=None if threshold is None else float(threshold),
                calibration_bins=settings.calibration_bins,
            )
    log.info(
        "%s%s",
        "validation " if not final else "",
        ", ".join(
            f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if "/" not in k and not k.startswith("n_")
        ),
    )
    return outcome
