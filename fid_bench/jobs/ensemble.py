"""``fid-bench ensemble``: finished runs combined into a new run of kind ``ensemble``.

Members are finished job or ensemble runs that logged a model. Their ``predictions.csv`` (validation
and test rows) are combined by ``fid_bench.ensemble_scores``: the combiner learns from the validation rows
only, never from a test label. The threshold is chosen on the ensemble's validation scores as a job
chooses its own, and the run logs what a job logs (``fid_bench.tracking.scored_run``: metrics with
intervals, per-group metrics, plots, ``predictions.csv``), the members' dataset inputs, and an MLflow
model whose predictor runs the members' predictors, so ``predict`` and ``promote`` take it like a job.

Each member's predictor is loaded through the model-location check (``fid_bench.predict``), with no
way around it: the ensemble's model embeds the members' pickles, so an ensemble must never carry a
model from outside the store into it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fid_bench.ensemble_scores import EnsemblePredictor, ensemble_scores
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.held_out import HeldOutSettings, threshold_and_source
from fid_bench.predict import load_run_predictor
from fid_bench.tracking.kinds import DATA_TAGS, KIND_TAG, RunKind
from fid_bench.tracking.lineage import copy_dataset_inputs
from fid_bench.tracking.logged_scores import log_held_out
from fid_bench.tracking.run_queries import has_model_kind, run_scores, runs_with_models
from fid_bench.tracking.scored_run import scored_run

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: what a refused member's line says instead of predict's --allow-external, which ensemble does not have
MEMBER_HINT = "and an ensemble's model embeds its members' models: they must be stored in the tracking store"

#: the tag listing an ensemble's members (run ids, comma separated, in the combiner's order)
MEMBERS_TAG = "fid_bench.members"


@dataclass
class EnsembleRun:
    """What ``log_ensemble`` logged."""

    run_id: str
    experiment: str
    members: list[str]
    metrics: dict[str, float]
    threshold_source: str
    combiner: dict[str, float | str]


def check_members(client: MlflowClient, members: Sequence[Run]) -> None:
    """Members are distinct finished job or ensemble runs that logged a model (else one line)."""
    ids = [r.info.run_id for r in members]
    if len(ids) < 2:
        raise FidBenchError(f"an ensemble needs at least two member runs, got {len(ids)}")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise FidBenchError(
            f"run {twice[0]} is given twice (a run spec such as 'best' may name a run given by id)"
        )
    with_models: dict[str, set[str] | None] = {}
    for run in members:
        run_id, kind = run.info.run_id, run.data.tags.get(KIND_TAG, "") or RunKind.JOB.value
        if not has_model_kind(run):
            raise FidBenchError(
                f"run {run_id} is a {kind} run: ensemble members must be job or ensemble runs"
            )
        if run.info.status != "FINISHED":
            raise FidBenchError(f"run {run_id} is {run.info.status}; ensemble members must be finished runs")
        exp = run.info.experiment_id
        if exp not in with_models:
            with_models[exp] = runs_with_models(client, exp)
        known = with_models[exp]
        if known is not None and run_id not in known:  # None: the store cannot tell; loading will
            raise FidBenchError(
                f"run {run_id} logged no model (tracking.log_model=false?); an ensemble runs its members' models"
            )


def member_settings(members: Sequence[Run]) -> HeldOutSettings:
    """The evaluation settings (bootstrap resamples, seed, calibration bins) the members were scored
    with, so the ensemble's intervals compare with theirs; the first member's when they differ, said
    in a warning naming what differs."""
    packaged = HeldOutSettings.packaged()
    each = [HeldOutSettings.of_params(r.data.params, packaged) for r in members]
    differ = [f for f in ("bootstrap", "seed", "calibration_bins") if len({getattr(s, f) for s in each}) > 1]
    if differ:
        log.warning(
            "ensemble members were evaluated with different %s; the ensemble uses those of run %s",
            "/".join(differ),
            members[0].info.run_id,
        )
    return each[0]


def default_experiment(client: MlflowClient, members: Sequence[Run]) -> str:
    """The experiment the members share (where the ensemble sits beside them on the leaderboard)."""
    ids = {r.info.experiment_id for r in members}
    if len(ids) > 1:
        names = sorted(client.get_experiment(i).name for i in ids)
        raise FidBenchError(
            f"the members come from several experiments {names}; choose one with --experiment"
        )
    return client.get_experiment(ids.pop()).name


def log_ensemble(
    client: MlflowClient,
    uri: str,
    members: Sequence[Run],
    method: str,
    *,
    name: str | None = None,
    experiment: str | None = None,
) -> EnsembleRun:
    """Combine ``members`` with ``method`` and log the ensemble as a new run (see the module docstring).

    ``experiment``: where to log it (default: the members' experiment). Every check (members, their
    test rows, their models) runs before the run is created, so a refused ensemble leaves no run.
    """
    check_members(client, members)
    experiment = experiment or default_experiment(client, members)
    ids = [r.info.run_id for r in members]
    settings = member_settings(members)
    frames = {run_id: run_scores(client, run) for run_id, run in zip(ids, members, strict=True)}
    scores, combiner = ensemble_scores(frames, method, seed=settings.seed)
    threshold, threshold_source = threshold_and_source(scores)
    predictor = EnsemblePredictor(
        [load_run_predictor(client, uri, run_id, hint=MEMBER_HINT) for run_id in ids],
        combiner,
        names=ids,
        threshold=threshold,
    )
    described = combiner.describe()
    params = {
        "method": method,
        "members": ",".join(ids),
        "n_members": len(ids),
        "threshold_source": threshold_source,
        **settings.params(),
        # stack: one weight per member (in the order of ``members``) and the intercept
        **{f"combiner.{k}": v for k, v in described.items() if k != "method"},
        **{
            f"member_threshold.{r.info.run_id}": r.data.metrics.get("threshold", float("nan"))
            for r in members
        },
    }
    tags = {
        "model": "ensemble",
        "classifier": method,
        MEMBERS_TAG: ",".join(ids),
        **{f"{MEMBERS_TAG}.{i}": run_id for i, run_id in enumerate(ids)},
    }
    for key in DATA_TAGS:  # carried when every member has the same value
        values = {r.data.tags.get(key) for r in members}
        if len(values) == 1 and None not in values:
            tags[key] = values.pop()
    run_name = name or f"ensemble-{method}-{len(ids)}"
    with scored_run(
        uri, experiment, kind=RunKind.ENSEMBLE, name=run_name, tags=tags, params=params,
        source="fid-bench ensemble",
    ) as run:  # fmt: skip
        metrics = log_held_out(run, scores, settings, threshold=threshold)
        copy_dataset_inputs(client, run.run_id, members)
        run.log_predictor(predictor)
    return EnsembleRun(run.run_id, experiment, ids, metrics, threshold_source, described)
