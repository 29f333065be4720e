"""Where a model may be loaded from: only the artifact roots the tracking store declares.

Loading a pickle runs code, so ``predict`` resolves every location a model URI reads from the way
MLflow's loader would (``model_uri_locations``) and checks each against the store's declared roots
(``check_model_location``) before it unpickles anything; the predictor is then loaded from copies of
exactly the checked files (``fid_bench.predict.load_checked_predictor``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from fid_bench.errors import FidBenchError
from fid_bench.tracking.kinds import MODEL_NAME
from fid_bench.tracking.run_queries import make_client
from fid_bench.tracking.store import DECLARED_ROOT_TAG, DEFAULT_EXPERIMENT_ID

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


def _declared(experiment: Any) -> bool:
    """Whether an experiment's ``artifact_location`` counts as declared by the store.

    MLflow's Default experiment gets ``<working folder of whoever first opened the store>/mlruns/0``
    without anyone choosing it, a folder nothing of the harness writes to, often in a shared working
    directory; it counts only when the harness declared it (``DECLARED_ROOT_TAG``) when it logged there.
    """
    if str(getattr(experiment, "experiment_id", "")) != DEFAULT_EXPERIMENT_ID:
        return True
    location = getattr(experiment, "artifact_location", None)
    if local_path(location or "") is None:
        return True  # a server's own artifact store (mlflow-artifacts:/0, a bucket it was given)
    tags = getattr(experiment, "tags", None) or {}
    return tags.get(DECLARED_ROOT_TAG) == location


def declared_artifact_locations(client: MlflowClient) -> list[str]:
    """The ``artifact_location`` of every experiment of the store, deleted ones included (all pages),
    except the Default experiment's implicit local folder (``_declared``)."""
    from mlflow.entities import ViewType

    locations: list[str] = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, page_token=token)
        for e in page:
            if not e.artifact_location:
                continue
            if _declared(e):
                locations.append(e.artifact_location)
            else:
                log.debug("not trusting the Default experiment's implicit folder %s", e.artifact_location)
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


#: what a refusal suggests: ``predict`` has ``--allow-external``; ``ensemble`` has no way around it
ALLOW_EXTERNAL_HINT = "pass --allow-external if you trust it"


def _refuse(problem: str, allow_external: bool, hint: str = ALLOW_EXTERNAL_HINT) -> None:
    if allow_external:
        log.warning("loading a model from outside the tracking store: %s", problem)
        return
    raise FidBenchError(
        f"refusing to load the model: {problem}; a pickled model can run arbitrary code, {hint}"
    )


def check_model_location(
    locations: Sequence[str], roots: StoreRoots, *, allow_external: bool, hint: str = ALLOW_EXTERNAL_HINT
) -> None:
    """Refuse to unpickle a model whose files come from outside the tracking store (``hint``: the way
    out the one-line refusal names)."""
    for location in locations:
        problem = location_problem(location, roots)
        if problem is not None:
            _refuse(problem, allow_external, hint)


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


def _copy_checked(
    src: Path, dst: Path, base: Path, allow_external: bool, seen: set[Path], hint: str = ALLOW_EXTERNAL_HINT
) -> None:
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
            _refuse(f"{entry} links to {real}, outside the model's folder {base}", allow_external, hint)
        if real.is_dir():
            _copy_checked(real, dst / entry.name, base, allow_external, seen, hint)
        elif real.is_file():
            shutil.copyfile(real, dst / entry.name)


def fetch_checked_model(
    locations: Sequence[str],
    dst: Path,
    tracking_uri: str,
    *,
    allow_external: bool,
    hint: str = ALLOW_EXTERNAL_HINT,
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
                _copy_checked(real, dst, real, allow_external, set(), hint)
                found = True
            continue
        try:  # a server's or a bucket's artifacts: MLflow's own downloader, for that location only
            get_artifact_repository(location, tracking_uri=tracking_uri).download_artifacts("", str(dst))
        except Exception as err:  # noqa: BLE001 - MLflow skips a location without files the same way
            log.debug("no model files at %s: %s", location, err)
        found = found or any(dst.iterdir())
    return found


# --------------------------------------------------------------------------- the MLmodel file of the copy
#
# The MLmodel file tells MLflow's loader where everything is, and MLflow joins each path onto the
# model's folder (``os.path.join``): an absolute or ``../`` path escapes the copy, and ``code`` and
# ``loader_module`` run Python from wherever they point. So the loader is never handed the copy:
# every path the MLmodel names (in every flavor) must lie inside the copy, the flavor must be the one
# fid_bench writes, and the predictor is unpickled from the checked artifact path by fid_bench itself.

MLMODEL = "MLmodel"
#: the python_function loader of MLflow's "models from code", the one flavor fid_bench logs
FID_BENCH_LOADER = "mlflow.pyfunc.loaders.code_model"
#: the artifact holding the pickled ``Predictor`` (``fid_bench.tracking.pyfunc``)
PREDICTOR_ARTIFACT = "predictor"
#: flavor keys whose values are paths relative to the model's folder (MLflow's pyfunc loader reads
#: ``data``, ``code``, ``python_model``, ``model_code_path`` (its base name), ``artifacts.*.path`` and
#: ``env``; other flavors name their files with the remaining keys)
_PATH_KEYS = (
    "data",
    "code",
    "python_model",
    "model_code_path",
    "env",
    "python_env",
    "conda_env",
    "pickled_model",
    "model_data",
    "model_path",
    "model_file",
    "saved_model_dir",
    "model_config",
)


def _path_values(value: Any, key: str) -> list[tuple[str, str]]:
    """``(where, path)`` for a path-valued entry: a string, a list of strings, or a mapping of them."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _path_values(v, f"{key}[{i}]")]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _path_values(v, f"{key}.{k}")]
    return []


def mlmodel_paths(mlmodel: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every path an MLmodel file names, as ``(flavor.key, path)``: the path keys of every flavor,
    each artifact's ``path``, and the saved input example."""
    found: list[tuple[str, str]] = []
    for flavor, conf in (mlmodel.get("flavors") or {}).items():
        if not isinstance(conf, dict):
            continue
        for key in _PATH_KEYS:
            if key == "model_config" and not isinstance(conf.get(key), str):
                continue  # a mapping of settings, not a file
            found += _path_values(conf.get(key), f"{flavor}.{key}")
        for name, info in (conf.get("artifacts") or {}).items():
            if isinstance(info, dict):
                found += _path_values(info.get("path"), f"{flavor}.artifacts.{name}.path")
    example = mlmodel.get("saved_input_example_info")
    if isinstance(example, dict):
        found += _path_values(example.get("artifact_path"), "saved_input_example_info.artifact_path")
    return found


def _inside_folder(folder: Path, path: str) -> bool:
    if not path or "\x00" in path:
        return False
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return False
    real = (folder / candidate).resolve()
    return real == folder or real.is_relative_to(folder)


def checked_predictor_file(folder: Path, model_uri: str) -> Path:
    """The pickled predictor of the model copied into ``folder``, after checking its MLmodel file.

    Refused in one line (whatever ``--allow-external`` says: the copy is all that is loaded, and a
    path outside it is not part of the checked files): a path of the MLmodel outside ``folder``
    (absolute, ``..``, or a link out); a python_function flavor that is not the one fid_bench writes
    (``loader_module``) is "not a fid_bench model".
    """
    import yaml

    folder = folder.resolve()
    try:
        mlmodel = yaml.safe_load((folder / MLMODEL).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise FidBenchError(f"cannot load the model {model_uri}: unreadable MLmodel file ({err})") from None
    if not isinstance(mlmodel, dict):
        raise FidBenchError(f"cannot load the model {model_uri}: its MLmodel file is not a mapping")
    for where, path in mlmodel_paths(mlmodel):
        # MLflow uses only the base name of model_code_path (it was the logging machine's path)
        checked = Path(path).name if where.endswith(".model_code_path") else path
        if not _inside_folder(folder, checked):
            raise FidBenchError(
                f"refusing to load the model {model_uri}: its MLmodel file names {path!r} ({where}), "
                "outside the model's own files (a path there could load any pickle or code)"
            )
    conf = (mlmodel.get("flavors") or {}).get("python_function")
    loader = conf.get("loader_module") if isinstance(conf, dict) else None
    artifacts = (conf or {}).get("artifacts") if isinstance(conf, dict) else None
    info = artifacts.get(PREDICTOR_ARTIFACT) if isinstance(artifacts, dict) else None
    if loader != FID_BENCH_LOADER or not isinstance(info, dict) or not isinstance(info.get("path"), str):
        raise FidBenchError(
            f"{model_uri} is not a fid_bench model (no predictor with predict_paths inside: python_function "
            f"loader {loader!r}, expected {FID_BENCH_LOADER!r} with a {PREDICTOR_ARTIFACT!r} artifact)"
        )
    return (folder / info["path"]).resolve()
