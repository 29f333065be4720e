"""Where a model may be loaded from: only inside the tracking store that logged it.

Loading a pickle runs code, so ``predict`` checks every location a model URI reads from against the
artifact roots of the tracking store (``check_model_location``) before it unpickles anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from fid_bench.errors import FidBenchError
from fid_bench.tracking.kinds import MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreRoots:
    """Where a tracking store keeps artifacts: local folders, or the artifact service of a server."""

    local: tuple[Path, ...] = ()
    server: str | None = None  # scheme://host:port of an MLflow server


def _configured_artifact_root() -> Path | None:
    """``tracking.artifact_root`` of conf/config.yaml, resolved like a run resolves it (from the cwd)."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "config.yaml"
    if not conf.is_file():
        return None
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = OmegaConf.select(OmegaConf.load(conf), "tracking.artifact_root", default=None)
    except OmegaConfBaseException as err:  # e.g. an interpolation only Hydra can resolve
        log.debug("tracking.artifact_root not resolvable outside a job: %s", err)
        return None
    return Path(str(value)).expanduser().resolve() if value else None


def store_roots(uri: str, extra: Sequence[str | Path] = ()) -> StoreRoots:
    """The artifact locations a tracking store produces (what ``check_model_location`` accepts)."""
    parsed = urlparse(uri)
    extra_paths = tuple(Path(p).expanduser().resolve() for p in extra)
    if parsed.scheme in ("http", "https"):
        return StoreRoots(local=extra_paths, server=f"{parsed.scheme}://{parsed.netloc}")
    if parsed.scheme.startswith("sqlite"):
        # sqlite:///relative.db or sqlite:////absolute.db
        db = uri.split(":///", 1)[1] if ":///" in uri else ""
        folder = Path(db).expanduser().resolve().parent if db and db != ":memory:" else None
    elif parsed.scheme in ("", "file"):
        folder = Path(unquote(parsed.path) if parsed.scheme else uri).expanduser().resolve()
    else:
        folder = None  # other database back ends: only the configured root is known to be ours
    roots = [p for p in (folder, _configured_artifact_root()) if p is not None]
    return StoreRoots(local=tuple(dict.fromkeys([*roots, *extra_paths])))


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:3] in (":\\", ":/")):
        return Path(location)  # a plain path (or a Windows drive path)
    return None


def location_problem(location: str, roots: StoreRoots) -> str | None:
    """Why ``location`` is not inside the tracking store, or None when it is."""
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
        return f"{location} is not served by the tracking server"
    path = _local_path(location)
    if path is None:
        return f"{location} is outside the tracking store ({parsed.scheme}:// storage it did not produce)"
    real = path.expanduser().resolve()  # resolves '..' and symlinks: no escaping the root
    if any(real == root or real.is_relative_to(root) for root in roots.local):
        return None
    where = ", ".join(str(r) for r in roots.local) or "a remote server"
    return f"{real} is outside the tracking store's artifact root ({where})"


def check_model_location(locations: Sequence[str], roots: StoreRoots, *, allow_external: bool) -> None:
    """Refuse to unpickle a model whose files come from outside the tracking store."""
    for location in locations:
        problem = location_problem(location, roots)
        if problem is None:
            continue
        if allow_external:
            log.warning("loading a model from outside the tracking store: %s", problem)
            continue
        raise FidBenchError(
            f"refusing to load the model: {problem}; a pickled model can run arbitrary code, "
            "pass --allow-external if you trust it"
        )


def logged_model_locations(client: MlflowClient, run: Run, name: str = MODEL_NAME) -> list[str]:
    """Where ``runs:/<run>/<name>`` reads from: the run's artifacts and the run's logged model, if any."""
    locations = [f"{run.info.artifact_uri.rstrip('/')}/{name}"]
    try:
        models = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'"
        )
    except Exception as err:  # noqa: BLE001 - old servers lack the logged-model API; run artifacts remain
        log.debug("logged-model search failed: %s", err)
        models = []
    locations += [m.artifact_location for m in models if m.source_run_id == run.info.run_id]
    return locations


def model_uri_locations(client: MlflowClient, model_uri: str, depth: int = 0) -> tuple[list[str], str | None]:
    """``(locations, run_id)`` that a model URI reads from, following ``runs:/`` and ``models:/``."""
    from mlflow.exceptions import MlflowException

    parsed = urlparse(model_uri)
    if depth > 3:
        raise FidBenchError(f"model URI {model_uri!r}: too many indirections")
    try:
        if parsed.scheme == "runs":
            run_id, _, rel = parsed.path.lstrip("/").partition("/")
            run = client.get_run(run_id)
            return logged_model_locations(client, run, rel or MODEL_NAME), run_id
        if parsed.scheme == "models":
            ref = parsed.path.lstrip("/") or parsed.netloc
            if "/" not in ref:  # models:/<logged model id>
                model = client.get_logged_model(ref)
                return [model.artifact_location], model.source_run_id
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
            return model_uri_locations(client, mv.source, depth + 1)
    except MlflowException as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FidBenchError(f"model URI {model_uri!r} not found in {client.tracking_uri}: {msg}") from None
    return [model_uri], None
