"""``fid-bench predict``: score new images with the model logged in any run, either track.

    fid-bench predict --run RUN_ID --data kaggle --root /data/generated-or-not --out submission.csv
    fid-bench predict --run best --images /some/folder --out predictions.csv

The model is the MLflow model ``model`` of a run: a pickled ``fid_bench.detector.Predictor`` (a
fine-tuned network, or an encoder plus a classifier on cached features). Its ``predict_paths``
applies the training preprocessing; its ``threshold`` and ``prior`` come from training.

Outputs:
* ``--data kaggle``: ``id,target`` for every id of ``test.csv``, in that order, ids verbatim;
  ``target`` is the probability, or the 0/1 label at the run's threshold with ``--labels``;
* ``--images DIR`` / ``--data folder``: ``id,path,score,label``.

An image that cannot be read is never dropped: it gets the training prior as its probability and
is reported. The written file is re-read and validated before the command reports success.

Loading a pickle runs code, so the model must come from the tracking store itself (see
``check_model_location``) unless ``--allow-external`` is given.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError
from fid_bench.tracking.run import KIND_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from fid_bench.detector import Predictor

log = logging.getLogger(__name__)

MODEL_NAME = "model"
#: suffixes taken by ``--images`` (any case)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif", ".heic"}
)
#: metrics where a smaller value is better; every other metric is maximised
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "brier_score", "ece", "eer", "loss"})
#: run kinds that never hold a model of their own (sweep and study parents, search trials, comparisons)
NON_MODEL_KINDS = frozenset({"parent", "sweep", "study", "trial", "comparison"})
#: how many unreadable ids are printed on the terminal (all of them go to a side file)
SHOW_UNREADABLE = 20


# --------------------------------------------------------------------------- tracking store


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else MLFLOW_TRACKING_URI, else the project's default store; local paths made
    absolute (the same resolution as the jobs that wrote the runs)."""
    from fid_bench.tracking.leaderboard import default_tracking_uri
    from fid_bench.tracking.store import resolve_tracking_uri

    return resolve_tracking_uri(explicit or default_tracking_uri())


def make_client(uri: str) -> MlflowClient:
    """A client for an existing store (reading never creates an empty store at a mistyped path)."""
    from fid_bench.tracking.leaderboard import open_store

    return open_store(uri)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.endswith("_loss") or metric.endswith("_std")


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


def model_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Finished runs of an experiment that can hold a model (sweep parents and comparisons left out)."""
    from fid_bench.tracking.leaderboard import fetch_runs

    runs = fetch_runs(client, [experiment_id])
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    return [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and r.info.run_id not in parents
        and r.data.tags.get(KIND_TAG, "") not in NON_MODEL_KINDS
    ]


def rank_runs(client: MlflowClient, experiment: str | None, metric: str) -> tuple[str, list[Run]]:
    """The finished model runs of an experiment, best first by ``metric`` (NaN values left out)."""
    exp_name, exp_id = resolve_experiment(client, experiment)
    runs = model_runs(client, exp_id)
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
    # ties broken by run id, as the leaderboard breaks them: its first row is what "best" picks
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


def resolve_run(client: MlflowClient, spec: str, *, experiment: str | None, metric: str) -> Run:
    """A run id, or ``best``: the best finished run of the experiment by ``metric``."""
    from mlflow.exceptions import MlflowException

    if spec == "best":
        exp_name, ranked = rank_runs(client, experiment, metric)
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
    try:
        run = client.get_run(spec)
    except MlflowException:
        raise FidBenchError(f"unknown run {spec!r} in the tracking store {client.tracking_uri}") from None
    kind = run.data.tags.get(KIND_TAG, "")
    if kind in NON_MODEL_KINDS:
        raise FidBenchError(
            f"run {spec} is a {kind} run and holds no model; give one of its job runs or --run best"
        )
    return run


# --------------------------------------------------------------------------- model location check
#
# Threat model. Trusted: the tracking store, i.e. its database (or server) and the artifact roots it
# declares itself: the ``artifact_location`` of each of its experiments and, for a tracking server,
# the artifacts it serves (``mlflow-artifacts:``). Refused: every other place, in particular the
# working directory, the folder that merely holds the SQLite file, a relative location, and links
# that lead out of a root or out of the model's folder. Why: a model is a pickle, and unpickling
# runs code; only the store's own artifacts were written by the harness's jobs.
#
# The locations checked are the ones MLflow's loader would read for the model URI, resolved here
# once (every page of logged models, ``storage_location`` before ``source``), and the predictor is
# then loaded from copies of exactly those checked files, never by handing MLflow the URI again.


@dataclass(frozen=True)
class StoreRoots:
    """The artifact roots a tracking store declares: the only places a model is unpickled from."""

    local: tuple[Path, ...] = ()  # real paths (symlinks resolved) of local roots
    remote: tuple[str, ...] = ()  # declared roots in other storage (s3://bucket/prefix, ...)
    server: str | None = None  # scheme://host:port of an MLflow server (its mlflow-artifacts proxy)


def declared_artifact_locations(client: MlflowClient) -> list[str]:
    """The ``artifact_location`` of every experiment of the store, deleted ones included (all pages)."""
    from mlflow.entities import ViewType

    locations: list[str] = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, page_token=token)
        locations += [e.artifact_location for e in page if e.artifact_location]
        token = page.token
        if not token:
            return locations


def store_roots(uri: str, client: MlflowClient | None = None, extra: Sequence[str | Path] = ()) -> StoreRoots:
    """The artifact roots the store at ``uri`` declares (what ``check_model_location`` accepts).

    Nothing is derived from the working directory or from where the SQLite file lies; a declared
    root given as a relative path is ignored (it would mean "relative to wherever predict runs").
    ``extra``: further roots the caller trusts.
    """
    parsed = urlparse(uri)
    server = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme in ("http", "https") else None
    client = client if client is not None else make_client(uri)
    local: list[Path] = []
    remote: list[str] = []
    for location in [*declared_artifact_locations(client), *(str(p) for p in extra)]:
        path = _local_path(location)
        if path is not None:
            path = path.expanduser()
            if path.is_absolute():
                local.append(path.resolve())  # symlinks resolved: the root is where the files really are
            else:
                log.debug("ignoring the relative artifact root %s: it depends on the working directory", path)
            continue
        declared = urlparse(location)
        if declared.scheme.lower() == "mlflow-artifacts" or (
            server is not None and f"{declared.scheme.lower()}://{declared.netloc}" == server
        ):
            continue  # served by the tracking server: covered by ``server``
        remote.append(location.rstrip("/"))
    return StoreRoots(local=tuple(dict.fromkeys(local)), remote=tuple(dict.fromkeys(remote)), server=server)


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:3] in (":\\", ":/")):
        return Path(location)  # a plain path (or a Windows drive path)
    return None


def _inside(real: Path, roots: StoreRoots) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots.local)


def _under_remote_root(location: str, root: str) -> bool:
    """``location`` is ``root`` or below it: same scheme and host, whole path segments, no dot segments."""
    loc, base = urlparse(location), urlparse(root)
    if (loc.scheme.lower(), loc.netloc) != (base.scheme.lower(), base.netloc) or loc.query or loc.params:
        return False
    segments = [unquote(s) for s in loc.path.split("/") if s]
    if any(s in (".", "..") or "/" in s or "\\" in s for s in segments):
        return False
    prefix = [unquote(s) for s in base.path.split("/") if s]
    return segments[: len(prefix)] == prefix


def _describe_roots(roots: StoreRoots, shown: int = 3) -> str:
    names = [str(r) for r in roots.local] + list(roots.remote)
    if roots.server is not None:
        names.insert(0, f"{roots.server} artifacts")
    if not names:
        return "it declares none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def location_problem(location: str, roots: StoreRoots) -> str | None:
    """Why ``location`` is not inside an artifact root the tracking store declares, or None when it is."""
    parsed = urlparse(location)
    if parsed.scheme == "mlflow-artifacts":
        if roots.server is None:
            return f"{location} names an MLflow server's artifacts, but the tracking store is local"
        if parsed.netloc and f"{roots.server.split('://', 1)[1]}" != parsed.netloc:
            return f"{location} is served by another server than {roots.server}"
        return None
    if parsed.scheme in ("http", "https"):
        if roots.server is not None and f"{parsed.scheme}://{parsed.netloc}" == roots.server:
            return None
        if any(_under_remote_root(location, root) for root in roots.remote):
            return None
        return f"{location} is not served by the tracking server"
    path = _local_path(location)
    if path is None:
        if any(_under_remote_root(location, root) for root in roots.remote):
            return None
        return f"{location} is outside the tracking store (no artifact root of the store contains it)"
    path = path.expanduser()
    if not path.is_absolute():
        return (
            f"{location} is a relative path, outside the tracking store (it depends on the working directory)"
        )
    real = path.resolve()  # resolves '..' and symlinks: no escaping a root
    if _inside(real, roots):
        return None
    return f"{real} is outside the tracking store's artifact roots ({_describe_roots(roots)})"


def _refuse(problem: str, allow_external: bool) -> None:
    if allow_external:
        log.warning("loading a model from outside the tracking store: %s", problem)
        return
    raise FidBenchError(
        f"refusing to load the model: {problem}; a pickled model can run arbitrary code, "
        "pass --allow-external if you trust it"
    )


def check_model_location(locations: Sequence[str], roots: StoreRoots, *, allow_external: bool) -> None:
    """Refuse to unpickle a model whose files come from outside the tracking store."""
    for location in locations:
        problem = location_problem(location, roots)
        if problem is not None:
            _refuse(problem, allow_external)


def run_logged_model(client: MlflowClient, run: Run, name: str = MODEL_NAME) -> Any | None:
    """The logged model that ``runs:/<run>/<name>`` reads, chosen as MLflow's loader chooses it: the
    first model called ``name`` whose source run is ``run``, searching every page of the experiment's
    logged models with the same query. None when there is none (or the store has no logged models)."""
    token = None
    try:
        while True:
            page = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'", page_token=token
            )
            for model in page:
                if model.source_run_id == run.info.run_id:
                    return model
            token = page.token
            if not token:
                return None
    except Exception as err:  # noqa: BLE001 - old servers lack the logged-model API; MLflow then reads
        log.debug("logged-model search failed: %s", err)  # the run's artifacts only, and so do we
        return None


def _join(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _append(location: str, path: str) -> str:
    from mlflow.utils.uri import append_to_uri_path

    return append_to_uri_path(location, path) if path else location


def model_uri_locations(client: MlflowClient, model_uri: str) -> list[str]:
    """Where MLflow reads the files of ``model_uri`` from, in its order (a later location's files
    replace an earlier one's): ``runs:/RUN/PATH`` is the run's artifacts at PATH, then the run's
    logged model of that name; ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/STAGE``
    are the version's ``storage_location`` when set, else its ``source``, followed through further
    ``runs:/`` and ``models:/`` URIs; ``models:/ID`` is the logged model's ``artifact_location``."""
    from mlflow.exceptions import MlflowException

    try:
        return _locations(client, model_uri, "", 0)
    except MlflowException as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FidBenchError(f"model URI {model_uri!r} not found in {client.tracking_uri}: {msg}") from None


def _locations(client: MlflowClient, uri: str, sub: str, depth: int) -> list[str]:
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if depth > 5:
        raise FidBenchError(f"model URI {uri!r}: too many indirections")
    scheme = urlparse(uri).scheme
    if scheme == "runs":
        run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
        path = _join(path, sub)
        if not path:
            raise FidBenchError(f"model URI {uri!r} names no model inside the run (runs:/RUN_ID/model)")
        run = client.get_run(run_id)
        locations = [_append(run.info.artifact_uri, path)]
        name, _, rest = path.partition("/")
        model = run_logged_model(client, run, name)
        if model is not None:
            locations.append(_append(model.artifact_location, rest))
        return locations
    if scheme == "models":
        root, path = ModelsArtifactRepository.split_models_uri(uri)
        path = _join(path, sub)
        found = get_model_name_and_version(client, root)
        if len(found) == 1:  # models:/<logged model id>
            return [_append(client.get_logged_model(found[0]).artifact_location, path)]
        name, version = found
        # storage_location when set, else source: what the registry hands MLflow's downloader
        return _locations(client, client.get_model_version_download_uri(name, version), path, depth + 1)
    return [_append(uri, sub)]


# --------------------------------------------------------------------------- loading the predictor


def _copy_checked(src: Path, dst: Path, base: Path, allow_external: bool, seen: set[Path]) -> None:
    """Copy folder ``src`` into ``dst``. Every file and folder below it, links followed, must stay inside
    ``base``, the model location's real folder (MLflow's own rule when it downloads local artifacts):
    a link that leads out of it is refused like a location outside the store."""
    real_src = src.resolve()
    if real_src in seen:
        return  # a link cycle
    seen.add(real_src)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(real_src.iterdir()):
        real = entry.resolve()
        if not (real == base or real.is_relative_to(base)):
            _refuse(f"{entry} links to {real}, outside the model's folder {base}", allow_external)
        if real.is_dir():
            _copy_checked(real, dst / entry.name, base, allow_external, seen)
        elif real.is_file():
            shutil.copyfile(real, dst / entry.name)


def fetch_checked_model(
    locations: Sequence[str], dst: Path, tracking_uri: str, *, allow_external: bool
) -> bool:
    """Copy the model files of ``locations`` (already checked) into ``dst``, in order, as MLflow merges
    a run's artifacts with its logged model's. Returns whether any location held files."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    found = False
    for location in locations:
        path = _local_path(location)
        if path is not None:
            real = path.expanduser().resolve()
            if real.is_dir():
                _copy_checked(real, dst, real, allow_external, set())
                found = True
            continue
        try:  # a server's or a bucket's artifacts: MLflow's own downloader, for that location only
            get_artifact_repository(location, tracking_uri=tracking_uri).download_artifacts("", str(dst))
        except Exception as err:  # noqa: BLE001 - MLflow skips a location without files the same way
            log.debug("no model files at %s: %s", location, err)
        found = found or any(dst.iterdir())
    return found


def load_checked_predictor(
    model_uri: str, locations: Sequence[str], client: MlflowClient, uri: str, *, allow_external: bool
) -> Predictor:
    """Check where the model's files come from, copy exactly those files, then unpickle its ``Predictor``.

    The predictor is loaded from that copy, never by handing ``model_uri`` back to MLflow to resolve
    a second time: the locations checked are the locations read, even if the store changes meanwhile.
    """
    import tempfile

    roots = store_roots(uri, client)
    check_model_location(locations, roots, allow_external=allow_external)
    from fid_bench.tracking.pyfunc import load_predictor

    with tempfile.TemporaryDirectory(prefix="fid_bench-model-") as tmp:
        dst = Path(tmp) / "model"
        dst.mkdir()
        if not fetch_checked_model(locations, dst, uri, allow_external=allow_external):
            raise FidBenchError(f"cannot load the model {model_uri}: no files at {', '.join(locations)}")
        if not (dst / "MLmodel").is_file():
            raise FidBenchError(f"cannot load the model {model_uri}: no MLmodel file (not an MLflow model)")
        try:
            return load_predictor(str(dst), tracking_uri=uri)
        except FidBenchError as err:  # name the model as the user did, not the temporary copy
            raise FidBenchError(str(err).replace(str(dst), model_uri)) from None


# --------------------------------------------------------------------------- images to predict


@dataclass
class Inputs:
    """Images to score: ``ids`` and ``paths`` aligned; ``unreadable`` maps a position to its reason."""

    ids: list[str]
    paths: list[str]
    kind: str  # "kaggle" | "images"
    unreadable: dict[int, str] = field(default_factory=dict)
    expected_ids: list[str] | None = None  # the ids the written file must hold, in order


def images_under(folder: str | Path, cache_dir: str | Path | None = None) -> Inputs:
    """Every image file under ``folder`` (by suffix, recursively; hidden files and folders ignored, as
    in the readers); ids are POSIX relative paths. ``folder`` may be a link; a link below it that leads
    outside it is listed as unreadable (``outside_root``), never followed.

    Files are checked (fully decoded, results cached in ``cache_dir``) before scoring, so unreadable
    ones are known and reported whichever predictor scores the rest.
    """
    from fid_bench.data.readers import OUTSIDE_ROOT, layout_bases, walk_files
    from fid_bench.data.validation import validate_files

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FidBenchError(f"--images {folder}: not a folder")
    # the readers' symlink rule: DIR may be a link, links found below it may not lead outside it
    top = str(root.absolute())
    found = sorted(
        (Path(p).relative_to(top).as_posix(), p, reason)
        for p, reason in walk_files(top, layout_bases(top, top))
        if Path(p).suffix.lower() in IMAGE_SUFFIXES
    )
    if not found:
        raise FidBenchError(f"--images {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    ids = [i for i, _, _ in found]
    paths = [p for _, p, _ in found]
    inputs = Inputs(ids=ids, paths=paths, kind="images", expected_ids=ids)
    inside = [i for i, (_, _, reason) in enumerate(found) if not reason]
    checks = validate_files([paths[i] for i in inside], cache_dir=cache_dir, desc="checking images")
    inputs.unreadable = {
        i: f"{OUTSIDE_ROOT}: {paths[i]} is a link to {os.path.realpath(paths[i])}, outside {top}"
        for i, (_, _, reason) in enumerate(found)
        if reason
    }
    inputs.unreadable.update(
        {i: c.message or c.reason for i, c in zip(inside, checks, strict=True) if not c.ok}
    )
    return inputs


def _read_test_ids(test_csv: Path) -> list[str]:
    """The ids of test.csv exactly as written (strings, no NaN conversion), read like the reader reads them."""
    try:
        frame = pd.read_csv(test_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{test_csv}: not a readable CSV ({' '.join(str(err).split())})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "id" not in frame.columns:
        raise FidBenchError(f"{test_csv}: no 'id' column (found: {', '.join(frame.columns) or 'none'})")
    return frame["id"].tolist()


def _kaggle_predict_reader(root: Path, cache_dir: Path) -> Any:
    """``KaggleReader`` limited to the test.csv rows: only the images to score are decoded and checked
    (the training images are not needed to predict)."""
    from fid_bench.data.readers import KaggleReader

    class PredictRowsReader(KaggleReader):
        def rows(self) -> list:
            return [row for row in super().rows() if row.split == "predict"]

    return PredictRowsReader(root=root, strict=False, cache_dir=cache_dir)


def kaggle_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """The ``test.csv`` rows of a generated-or-not folder, in file order, none dropped."""
    root = Path(root).expanduser()
    test_csv = root / "test.csv"
    if not test_csv.is_file():
        raise FidBenchError(f"--root {root}: no test.csv (expected the generated-or-not layout)")
    expected = _read_test_ids(test_csv)
    if not expected:
        raise FidBenchError(f"{test_csv}: no ids to predict")
    dup = pd.Series(expected)[pd.Series(expected).duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(
            f"{test_csv}: {len(dup)} id(s) listed twice, e.g. {dup[:3]}; a submission needs each id once"
        )
    samples = _kaggle_predict_reader(root, Path(cache_dir)).read()
    table = samples.table[samples.table["split"] == "predict"].reset_index(drop=True)
    ids = table["id"].astype(str).tolist()
    if ids != expected:
        raise FidBenchError(
            f"{test_csv}: the reader returned {len(ids)} prediction rows for {len(expected)} ids "
            "(or another order); refusing to write a submission that does not match test.csv"
        )
    inputs = Inputs(ids=ids, paths=table["path"].astype(str).tolist(), kind="kaggle", expected_ids=expected)
    bad = samples.unreadable_predict
    reasons = dict(zip(bad["id"].astype(str), bad["reason"].astype(str), strict=True))
    for pos, (id_, path, sha1) in enumerate(zip(ids, inputs.paths, table["sha1"].astype(str), strict=True)):
        if id_ in reasons:
            inputs.unreadable[pos] = reasons[id_]
        elif not path or not sha1:  # no file, or a file the reader could not decode
            inputs.unreadable[pos] = "unreadable"
    return inputs


def folder_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """Every image of a class-folder data set (``FolderReader``), ids as the reader gives them (relative
    paths); files the reader skipped stay in, as unreadable."""
    from fid_bench.data.readers import FolderReader

    samples = FolderReader(root=Path(root).expanduser(), strict=False, cache_dir=Path(cache_dir)).read()
    good = samples.table[["id", "path"]].assign(reason="")
    bad = samples.skipped[["id", "path", "reason"]]
    rows = (
        pd.concat([good, bad], ignore_index=True).sort_values("id", kind="mergesort").reset_index(drop=True)
    )
    if rows.empty:
        raise FidBenchError(f"--root {root}: no images")
    ids = rows["id"].astype(str).tolist()
    inputs = Inputs(ids=ids, paths=rows["path"].astype(str).tolist(), kind="images", expected_ids=ids)
    inputs.unreadable = {i: str(r) for i, r in enumerate(rows["reason"]) if r}
    return inputs


# --------------------------------------------------------------------------- scoring


_DECODE_FAILURES = (FidBenchError, OSError, ValueError)


def predict_all(
    predictor: Predictor, inputs: Inputs, *, batch_size: int = 1024, progress: bool = True
) -> np.ndarray:
    """Score every readable input in batches; unreadable ones get ``predictor.prior``.

    A batch that fails on a bad file is retried image by image, so one broken file costs only itself;
    a NaN score is treated the same way. Newly found failures are added to ``inputs.unreadable``.
    """
    from tqdm import tqdm

    prior = float(getattr(predictor, "prior", 0.5))
    scores = np.full(len(inputs.ids), np.nan, dtype=np.float64)
    todo = [i for i in range(len(inputs.ids)) if i not in inputs.unreadable]
    with tqdm(total=len(todo), unit="img", desc="predict", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                out = _checked(predictor.predict_paths([inputs.paths[i] for i in batch]), len(batch))
            except _DECODE_FAILURES as err:
                log.debug("batch at %d failed (%s); scoring its images one by one", start, err)
                out = np.array([_predict_one(predictor, inputs, i) for i in batch])
            scores[batch] = out
            _note_reported_unreadable(predictor, inputs, batch)
            bar.update(len(batch))
    for i in np.flatnonzero(np.isnan(scores)):
        inputs.unreadable.setdefault(int(i), "no score")
    scores[list(inputs.unreadable)] = prior
    return scores


def _note_reported_unreadable(predictor: Predictor, inputs: Inputs, batch: list[int]) -> None:
    """Predictors that score unreadable images themselves list them as ``unreadable`` (path, reason)."""
    reported = getattr(predictor, "unreadable", None) or []
    if not reported:
        return
    by_path: dict[str, list[int]] = {}
    for i in batch:
        by_path.setdefault(inputs.paths[i], []).append(i)
    for path, reason in reported:
        for i in by_path.get(str(path), []):
            inputs.unreadable[i] = " ".join(str(reason).split())


def _checked(out: Any, n: int) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise FidBenchError(f"the model returned {arr.size} scores for {n} images")
    return arr


def _predict_one(predictor: Predictor, inputs: Inputs, i: int) -> float:
    try:
        return float(_checked(predictor.predict_paths([inputs.paths[i]]), 1)[0])
    except _DECODE_FAILURES as err:
        inputs.unreadable[i] = " ".join(str(err).split()) or type(err).__name__
        return math.nan


# --------------------------------------------------------------------------- writing and validating


def build_output(inputs: Inputs, scores: np.ndarray, predictor: Predictor, *, labels: bool) -> pd.DataFrame:
    threshold = float(getattr(predictor, "threshold", 0.5))
    if not math.isfinite(threshold):
        raise FidBenchError(f"the run's stored threshold is {threshold}; cannot write 0/1 labels")
    predicted = (scores >= threshold).astype(np.int64)
    if inputs.kind == "kaggle":
        return pd.DataFrame({"id": inputs.ids, "target": predicted if labels else scores})
    return pd.DataFrame({"id": inputs.ids, "path": inputs.paths, "score": scores, "label": predicted})


def value_checks(columns: Sequence[str], *, labels: bool) -> dict[str, bool]:
    """``{column: must_be_0_or_1}`` for the value columns of an output table."""
    if "target" in columns:  # Kaggle submission
        return {"target": labels}
    return {"score": False, "label": True}


def validate_output(path: Path, expected_ids: Sequence[str], checks: dict[str, bool]) -> int:
    """Re-read a written file: every id once, in order; values in [0, 1] (0 or 1 for label columns)."""
    try:
        df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{path}: written file cannot be read back ({err})") from None
    if len(df) != len(expected_ids):
        raise FidBenchError(f"{path}: {len(df)} rows written for {len(expected_ids)} ids")
    dup = df["id"][df["id"].duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(f"{path}: {len(dup)} duplicate id(s), e.g. {dup[:5]}")
    if df["id"].tolist() != list(expected_ids):
        raise FidBenchError(f"{path}: ids differ from the input ids or their order")
    for column, binary in checks.items():
        if column not in df.columns:
            raise FidBenchError(f"{path}: column {column!r} missing")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if binary:
            bad |= ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise FidBenchError(f"{path}: {int(bad.sum())} {column} value(s) out of range")
    return len(df)


def write_output(df: pd.DataFrame, out: Path, expected_ids: Sequence[str], *, labels: bool) -> None:
    """Write next to ``out``, validate, then move into place: a bad file never replaces a good one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    try:
        validate_output(tmp, expected_ids, value_checks(df.columns, labels=labels))
    except FidBenchError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def report_unreadable(inputs: Inputs, out: Path, prior: float) -> Path | None:
    if not inputs.unreadable:
        return None
    listing = out.with_name(f"{out.stem}.unreadable.csv")
    rows = sorted(inputs.unreadable.items())
    pd.DataFrame(
        {
            "id": [inputs.ids[i] for i, _ in rows],
            "path": [inputs.paths[i] for i, _ in rows],
            "reason": [r for _, r in rows],
        }
    ).to_csv(listing, index=False)
    print(
        f"{len(rows)} image(s) could not be read and got the training prior {prior:.4f}"
        f" (all listed in {listing}):"
    )
    for i, reason in rows[:SHOW_UNREADABLE]:
        print(f"  {inputs.ids[i]}: {reason}")
    if len(rows) > SHOW_UNREADABLE:
        print(f"  ... and {len(rows) - SHOW_UNREADABLE} more")
    return listing


# --------------------------------------------------------------------------- command line


class UsageError(FidBenchError):
    """Arguments that do not fit together (exit code 2, like argparse's own errors)."""

    exit_code = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench predict`` (also ``python -m fid_bench.predict``)."""
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", help="run id, or 'best': the best finished run of --experiment by --metric")
    model.add_argument(
        "--model-uri",
        "--model",
        help="an MLflow model URI (runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS) "
        "or a model folder inside the store",
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--images", metavar="DIR", help="score every image file under DIR (ids = relative paths)"
    )
    data.add_argument("--data", choices=("kaggle", "folder"), help="read --root with this data set's reader")
    p.add_argument("--root", metavar="DIR", help="data set folder for --data")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")
    p.add_argument(
        "--labels",
        action="store_true",
        help="Kaggle submission: target = 0/1 label at the run's stored threshold instead of the probability",
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="experiment of --run best (default: the only one with runs)"
    )
    p.add_argument(
        "--metric",
        default="roc_auc",
        help="metric ranking --run best (default: roc_auc; losses such as log_loss rank lowest first)",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    p.add_argument(
        "--allow-external",
        action="store_true",
        help="load a model stored outside the tracking store (a pickle can run code: only if you trust it)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="images per call to the model (default: 1024; the model batches internally as in training)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="feature cache for embedding models (default: the training run's cache folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run_command)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("FID_BENCH_CACHE_DIR") or Path.home() / ".cache" / "fid_bench")


def _choose_feature_cache(predictor: Predictor, explicit: Path | None) -> None:
    """Embedding models extract features for new images through the training run's cache folder;
    ``--cache-dir`` overrides it, and an unusable stored folder (another machine) falls back to the
    default cache."""
    stored = getattr(predictor, "cache_dir", None)
    if stored is None:
        return  # a fine-tuned network has no feature cache
    if explicit is not None:
        predictor.cache_dir = str(explicit.expanduser())
        return
    try:
        Path(stored).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning(
            "feature cache %s of the run is unusable here (%s); using %s", stored, err, _default_cache_dir()
        )
        predictor.cache_dir = str(_default_cache_dir())


def check_arguments(args: argparse.Namespace) -> None:
    if args.run is not None and not args.run.strip():
        raise UsageError("--run is empty: give a run id (see fid-bench leaderboard) or 'best'")
    if args.data and not args.root:
        raise UsageError(f"--data {args.data} needs --root")
    if args.root and not args.data:
        raise UsageError("--root is read only with --data")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the CSV file to write")


def _absolute_if_path(model_uri: str) -> str:
    """``--model-uri`` naming a folder: made absolute here, from the working directory the user typed it
    in (a URI with a scheme is left as it is)."""
    path = _local_path(model_uri)
    if path is None or urlparse(model_uri).scheme == "file":
        return model_uri
    return str(Path(path).expanduser().absolute())


def predict(args: argparse.Namespace) -> pd.DataFrame:
    """Run the command for parsed ``args``; returns the written table."""
    check_arguments(args)
    uri = tracking_uri(args.tracking_uri)
    cache_dir = (args.cache_dir or _default_cache_dir()).expanduser()

    # data problems show before any model is downloaded
    if args.images:
        inputs = images_under(args.images, cache_dir)
    elif args.data == "kaggle":
        inputs = kaggle_inputs(args.root, cache_dir)
    else:
        inputs = folder_inputs(args.root, cache_dir)

    client = make_client(uri)
    if args.run:
        run = resolve_run(client, args.run, experiment=args.experiment, metric=args.metric)
        model_uri = f"runs:/{run.info.run_id}/{MODEL_NAME}"
    else:
        model_uri = _absolute_if_path(args.model_uri)
    locations = model_uri_locations(client, model_uri)
    predictor = load_checked_predictor(model_uri, locations, client, uri, allow_external=args.allow_external)
    _choose_feature_cache(predictor, args.cache_dir)

    scores = predict_all(predictor, inputs, batch_size=args.batch_size, progress=not args.no_progress)
    prior = float(getattr(predictor, "prior", 0.5))
    table = build_output(inputs, scores, predictor, labels=args.labels)
    write_output(table, args.out, inputs.expected_ids or inputs.ids, labels=args.labels)
    report_unreadable(inputs, args.out, prior)
    what = "0/1 labels" if args.labels and inputs.kind == "kaggle" else "scores"
    print(f"wrote {len(table)} {what} from {model_uri} to {args.out}")
    return table


def run_command(args: argparse.Namespace) -> int:
    predict(args)
    return 0


PROG = "fid-bench predict"
DESCRIPTION = "Score images with the model logged in a run (either track) and write a CSV."


def main(argv: list[str] | None = None) -> int:
    """``python -m fid_bench.predict``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    from fid_bench.cli import run_standalone

    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
