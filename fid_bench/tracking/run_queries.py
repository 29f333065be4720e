"""Run queries: which tracking store, opening it, reading its runs, resolving a run id or ``best``.

Used by the leaderboard, ``compare`` and ``predict``; reading never creates a store.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

from fid_bench.errors import FidBenchError, first_line
from fid_bench.evaluation.metric_registry import lower_is_better
from fid_bench.tracking.kinds import KIND_TAG, MODEL_NAME, NO_MODEL_KINDS, UNRANKED_KINDS, no_model_reason
from fid_bench.tracking.store import (
    DEFAULT_TRACKING_URI,
    local_store_path,
    probe_server,
    resolve_tracking_uri,
    sqlite_store_problem,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the scores artifact of every run scored on test rows (validation rows next to the test rows)
PREDICTIONS = "predictions.csv"


class LeaderboardError(FidBenchError):
    """A leaderboard request that cannot be answered (shown as one line, exit code 2)."""

    exit_code = 2


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store; a clear error when there is none or it cannot be reached.

    Reading must not create anything: MLflow would happily create an empty database (or run its
    migrations on an unrelated SQLite file) at a mistyped path.
    """
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    path = local_store_path(uri)
    if uri.startswith("sqlite:///") and path is not None:
        if not path.is_file():
            raise LeaderboardError(
                f"no tracking store at {path} (pass --tracking-uri or set MLFLOW_TRACKING_URI)"
            )
        _check_mlflow_sqlite(path)
    elif path is not None:
        if not path.is_dir():
            raise LeaderboardError(
                f"no tracking store at {path} (pass --tracking-uri or set MLFLOW_TRACKING_URI)"
            )
    elif uri.startswith(("http://", "https://")):
        try:
            probe_server(uri)  # the one probe jobs use too (tracking.store)
        except FidBenchError as err:
            raise LeaderboardError(str(err)) from None
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any store failure becomes one line
        raise LeaderboardError(f"cannot read tracking store {uri}: {first_line(err)}") from None
    return client


def _check_mlflow_sqlite(path: Any) -> None:
    problem = sqlite_store_problem(path, new_ok=False)
    if problem is not None:
        raise LeaderboardError(problem)


def fetch_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> list[Run]:
    """All active runs of the experiments matching ``filter_string`` (every page)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else MLFLOW_TRACKING_URI, else the project's default store; local paths made
    absolute (the same resolution as the jobs that wrote the runs)."""
    return resolve_tracking_uri(explicit or default_tracking_uri())


def make_client(uri: str) -> MlflowClient:
    """A client for an existing store (reading never creates an empty store at a mistyped path)."""
    return open_store(uri)


def _experiment_ids_with_runs(client: MlflowClient) -> dict[str, str]:
    """``{name: experiment_id}`` of the active experiments that hold at least one run."""
    out = {}
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], max_results=1):
            out[exp.name] = exp.experiment_id
    return out


def resolve_experiment(client: MlflowClient, name: str | None) -> tuple[str, str]:
    """``(name, experiment_id)``: the named experiment, or the only one that holds runs."""
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            choices = sorted(_experiment_ids_with_runs(client))
            raise FidBenchError(f"no experiment named {name!r}; experiments with runs: {choices or 'none'}")
        return exp.name, exp.experiment_id
    with_runs = _experiment_ids_with_runs(client)
    if not with_runs:
        raise FidBenchError("the tracking store holds no runs yet; run `python -m fid_bench` first")
    if len(with_runs) > 1:
        raise FidBenchError(
            f"several experiments hold runs, choose one with --experiment: {sorted(with_runs)}"
        )
    ((exp_name, exp_id),) = with_runs.items()
    return exp_name, exp_id


def ranked_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Finished runs of an experiment the leaderboard ranks: jobs, ensembles and imported runs
    (sweep parents, trials and comparisons left out)."""
    runs = fetch_runs(client, [experiment_id])
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    return [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and r.info.run_id not in parents
        and r.data.tags.get(KIND_TAG, "") not in UNRANKED_KINDS
    ]


def has_model_kind(run: Run) -> bool:
    """A job or ensemble run (untagged runs count as jobs): the kinds ``predict`` and ``promote`` accept."""
    return run.data.tags.get(KIND_TAG, "") not in NO_MODEL_KINDS


def rank_runs(client: MlflowClient, experiment: str | None, metric: str) -> tuple[str, list[Run]]:
    """The finished ranked runs of an experiment, best first by ``metric`` (NaN values left out)."""
    exp_name, exp_id = resolve_experiment(client, experiment)
    runs = ranked_runs(client, exp_id)
    if not runs:
        raise FidBenchError(f"experiment {exp_name!r} has no finished runs")
    scored = [r for r in runs if not math.isnan(r.data.metrics.get(metric, math.nan))]
    if not scored:
        # the headline metrics only: per-group and audit metrics ("a/b") and "_std" would drown them
        logged = sorted({k for r in runs for k in r.data.metrics if "/" not in k and not k.endswith("_std")})
        shown = ", ".join(logged[:20]) + (", ..." if len(logged) > 20 else "")
        raise FidBenchError(
            f"metric {metric!r} was never logged in experiment {exp_name!r} (logged: {shown or 'none'})"
        )
    sign = 1.0 if lower_is_better(metric) else -1.0
    # ties broken by run id, as the leaderboard breaks them: "best" picks its first row with a model
    scored.sort(key=lambda r: (sign * r.data.metrics[metric], r.info.run_id))
    return exp_name, scored


def runs_with_models(client: MlflowClient, experiment_id: str, name: str = MODEL_NAME) -> set[str] | None:
    """Ids of the runs of an experiment that logged a model called ``name``; None if the store cannot tell."""
    ids: set[str] = set()
    token = None
    try:
        while True:
            page = client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
            )
            ids.update(m.source_run_id for m in page if m.source_run_id)
            token = page.token
            if not token:
                return ids
    except Exception as err:  # noqa: BLE001 - a store without the logged-model API: do not filter
        log.debug("logged-model search failed: %s", err)
        return None


#: the shortest run-id prefix a command accepts (the leaderboard prints 8 characters)
MIN_PREFIX = 6
_HEX = frozenset("0123456789abcdef")


def _runs_with_prefix(client: MlflowClient, prefix: str) -> list[Run]:
    """Active runs of active experiments whose id starts with ``prefix`` (lower-case hex)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    try:
        return fetch_runs(client, ids, f"attributes.run_id LIKE '{prefix}%'")
    except Exception as err:  # noqa: BLE001 - a store without LIKE on run ids: scan its runs
        log.debug("run id LIKE search failed (%s); scanning the runs", first_line(err))
        return [r for r in fetch_runs(client, ids) if r.info.run_id.startswith(prefix)]


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run with id ``run_id``, or the one run whose id starts with it (at least ``MIN_PREFIX``
    characters, as the leaderboard prints them), of any kind. An unknown id, a too short prefix or
    one shared by several runs (they are listed) is a one-line error."""
    from mlflow.exceptions import MlflowException

    spec = run_id.strip()
    try:
        return client.get_run(spec)
    except MlflowException:
        pass
    unknown = f"unknown run {run_id!r} in the tracking store {client.tracking_uri}"
    prefix = spec.lower()
    if not prefix or not set(prefix) <= _HEX:
        raise FidBenchError(unknown) from None
    if len(prefix) < MIN_PREFIX:
        raise FidBenchError(
            f"run id prefix {run_id!r} is too short: give at least {MIN_PREFIX} characters of the id"
        )
    found = _runs_with_prefix(client, prefix)
    if not found:
        raise FidBenchError(unknown)
    if len(found) > 1:
        listed = ", ".join(f"{r.info.run_id} ({r.info.run_name or '-'})" for r in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise FidBenchError(f"run id prefix {run_id!r} is ambiguous: {listed}{more}")
    return found[0]


def resolve_run(
    client: MlflowClient, spec: str, *, experiment: str | None, metric: str, scoped: bool = True
) -> Run:
    """A run id, or ``best``: the best finished run of the experiment by ``metric`` that holds a model.

    The leaderboard's first row unless that is an imported run (no model) or logged no model. A run
    id given with ``experiment`` must belong to it (``scoped``; else one line), so the experiment is
    never silently ignored; ``scoped=False`` when the experiment means something else to the caller.
    """
    if spec == "best":
        exp_name, ranked = rank_runs(client, experiment, metric)
        if not has_model_kind(ranked[0]):
            log.info(
                "the leaderboard's first run, %s, holds no model; skipping runs without one",
                ranked[0].info.run_id,
            )
        ranked = [r for r in ranked if has_model_kind(r)]
        if not ranked:
            raise FidBenchError(
                f"no finished job or ensemble run of experiment {exp_name!r} is ranked by {metric} "
                "(imported runs hold no model)"
            )
        with_model = runs_with_models(client, ranked[0].info.experiment_id)
        if with_model:  # empty or None: the store cannot tell (models logged another way); load will say
            usable = [r for r in ranked if r.info.run_id in with_model]
            if not usable:
                raise FidBenchError(
                    f"no finished run of experiment {exp_name!r} ranked by {metric} logged a model "
                    "(tracking.log_model=false?)"
                )
            if usable[0] is not ranked[0]:
                log.warning(
                    "best run by %s, %s, logged no model; using the best run that did",
                    metric,
                    ranked[0].info.run_id,
                )
            ranked = usable
        best = ranked[0]
        log.info(
            "best run of %r by %s: %s (%s=%.4f)",
            exp_name,
            metric,
            best.info.run_id,
            metric,
            best.data.metrics[metric],
        )
        return best
    run = get_run(client, spec)
    if scoped and experiment is not None:
        actual = client.get_experiment(run.info.experiment_id).name
        if actual != experiment:
            raise FidBenchError(
                f"run {spec} belongs to experiment {actual!r}, not to --experiment {experiment!r}; "
                "drop --experiment or give a run of that experiment"
            )
    kind = run.data.tags.get(KIND_TAG, "")
    if kind in NO_MODEL_KINDS:
        raise FidBenchError(no_model_reason(run.info.run_id, kind))
    return run


def run_scores(client: MlflowClient, run: Run) -> pd.DataFrame:
    """A run's ``predictions.csv`` (its validation and test rows), ids and groups as text."""
    import tempfile

    import pandas as pd
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="fid_bench-scores-") as tmp:
        try:
            local = client.download_artifacts(run_id, PREDICTIONS, tmp)
        except (MlflowException, OSError):
            raise FidBenchError(
                f"run {run_id} has no {PREDICTIONS} artifact (status {run.info.status}); only finished "
                "runs scored on test rows can be used"
            ) from None
        # no NA parsing: an id such as "NA" stays an id, an empty group stays ""
        # content hashes are text too: a hex digest of digits only would read as a number
        scores = pd.read_csv(local, dtype={"id": str, "group": str, "sha1": str}, keep_default_na=False)
    missing = [c for c in ("id", "label", "score", "split") if c not in scores.columns]
    if missing:
        raise FidBenchError(f"run {run_id}: {PREDICTIONS} lacks column(s) {missing}")
    return scores


def held_out_scores(client: MlflowClient, run: Run) -> pd.DataFrame:
    """The ``split == "test"`` rows of a run's ``predictions.csv`` (``run_scores``), scores as floats."""
    import pandas as pd

    run_id = run.info.run_id
    scores = run_scores(client, run)
    test = scores[scores["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise FidBenchError(f"run {run_id}: {PREDICTIONS} has no split=='test' rows")
    # read without NA parsing: an empty score is text until converted, and refused here
    score = pd.to_numeric(test["score"], errors="coerce")
    if score.isna().any():
        raise FidBenchError(
            f"run {run_id}: {int(score.isna().sum())} test row(s) of {PREDICTIONS} have no score"
        )
    return test.assign(score=score.astype(float))
