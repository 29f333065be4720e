"""Where a model may be loaded from: only the artifact roots the tracking store declares.

Loading a pickle runs code, so ``predict`` resolves every location a model URI reads from the way
MLflow's loader would (``model_uri_locations``) and checks each against the store's declared roots
(``check_model_location``) before it unpickles anything; the predictor is then loaded from copies of
exactly the checked files (``fid_bench.predict.load_checked_predictor``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from fid_bench.errors import FidBenchError
from fid_bench.tracking.kinds import MODEL_NAME
from fid_bench.tracking.runs import make_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

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
        path = local_path(location)
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


def local_path(location: str) -> Path | None:
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
    path = local_path(location)
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


# --------------------------------------------------------------------------- copying the checked files


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
        path = local_path(location)
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
