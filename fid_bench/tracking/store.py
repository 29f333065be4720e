"""Where runs go: tracking URI resolution, store connection and race-safe experiment creation."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

from fid_bench.errors import FidBenchError, first_line
from fid_bench.tracking.ui import NOTE_TAG, experiment_description, experiment_tags

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns/artifacts"

_SQLITE_PREFIX = "sqlite:///"
#: MLflow's implicit "Default" experiment, made with every store
DEFAULT_EXPERIMENT_ID = "0"
#: the experiment tag by which the harness declares the folder of an experiment it did not create
#: (the Default experiment, when a job is told to log into it): its value is that artifact location
DECLARED_ROOT_TAG = "fid_bench.declared_artifact_root"


def original_cwd(hydra_cfg: Any = None) -> Path:
    """The directory the command was started in (relative store paths are relative to it).

    ``hydra_cfg`` is a ``hydra`` config node; without it the running job's HydraConfig is used.
    Outside a Hydra app (tests, notebooks) this is the current directory.
    """
    from omegaconf import OmegaConf

    if hydra_cfg is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return Path.cwd()
        hydra_cfg = HydraConfig.get()
    cwd = OmegaConf.select(hydra_cfg, "runtime.cwd", default=None, throw_on_missing=False)
    return Path(cwd) if cwd else Path.cwd()


def resolve_tracking_uri(uri: str, base: Path | None = None) -> str:
    """Make a local store's path absolute (relative paths are taken from ``base``); others unchanged.

    Jobs may run with another working directory (``hydra.job.chdir``) or in worker processes, so
    every process must name the same store.
    """
    base = base or Path.cwd()
    if uri.startswith(_SQLITE_PREFIX):
        rest = uri[len(_SQLITE_PREFIX) :]
        if rest in ("", ":memory:"):
            return uri
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = base / path
        # an absolute posix path starts with "/", giving the four-slash absolute form
        return _SQLITE_PREFIX + path.resolve().as_posix()
    path = _file_store_path(uri)
    if path is not None:
        if not path.is_absolute():
            path = base / path
        return path.resolve().as_uri()
    return uri


def _file_store_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path).expanduser()
    # a bare path, or a Windows drive letter parsed as a one-letter scheme
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        return Path(uri).expanduser()
    return None


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) of a local tracking store; None for a server."""
    if uri.startswith(_SQLITE_PREFIX):
        rest = uri[len(_SQLITE_PREFIX) :]
        return None if rest in ("", ":memory:") else Path(rest)
    return _file_store_path(uri)


def is_local_store(uri: str) -> bool:
    return local_store_path(uri) is not None


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation between processes on this machine.

    MLflow creates a fresh SQLite database by running its migrations; two jobs doing that at
    once fail with "duplicate column". A lock file next to the store makes the second one wait.
    """
    from filelock import FileLock

    path = local_store_path(uri)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock") if uri.startswith(_SQLITE_PREFIX) else path / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        yield


def _prepare_local_store(uri: str) -> None:
    path = local_store_path(uri)
    if path is None:
        return
    folder = path.parent if uri.startswith(_SQLITE_PREFIX) else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FidBenchError(f"cannot create the tracking store folder {folder}: {err.strerror}") from None


def probe_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that is down or unhealthy: one request to its ``/health``, no
    retries. Only a 2xx answer counts: MLflow's own client retries a 5xx answer (or no answer) for
    minutes before giving up, and a proxy in front of a stopped server answers 502/503."""
    import requests

    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        raise FidBenchError(f"cannot reach tracking server {uri}: {type(err).__name__}") from None
    if not 200 <= answer.status_code < 300:
        reason = f" {answer.reason}" if answer.reason else ""
        raise FidBenchError(
            f"tracking server {uri} is not healthy: /health answered HTTP {answer.status_code}{reason}"
        )


def sqlite_store_problem(path: Path, *, new_ok: bool = True) -> str | None:
    """Why the SQLite file at ``path`` cannot be used as an MLflow store, or None when it can.

    With ``new_ok`` (a job) a missing file or a database without tables becomes a new store;
    without it (reading) only an existing MLflow store will do. A database that holds tables but
    no MLflow ``experiments`` table belongs to something else: MLflow would add its own tables to
    it, so it is refused. Read-only: nothing is written to the file.
    """
    import sqlite3

    try:
        if new_ok and (not path.is_file() or path.stat().st_size == 0):
            return None
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (sqlite3.Error, OSError) as err:
        return f"cannot read tracking store {path}: {err}"
    if "experiments" in tables or (new_ok and not tables):
        return None
    held = f"it holds other tables: {', '.join(sorted(tables)[:5])}" if tables else "it holds no tables"
    return f"{path} is not an MLflow tracking database ({held})"


def connect(uri: str) -> MlflowClient:
    """A client for ``uri`` (already resolved); a local store and its folder are created if needed,
    a tracking server is probed first, and an SQLite file of something else is refused."""
    from mlflow.tracking import MlflowClient

    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    _prepare_local_store(uri)
    try:
        with _store_lock(uri):
            path = local_store_path(uri)
            if uri.startswith(_SQLITE_PREFIX) and path is not None:
                problem = sqlite_store_problem(path)
                if problem is not None:
                    raise FidBenchError(problem)
            return MlflowClient(tracking_uri=uri)
    except FidBenchError:
        raise
    except Exception as err:  # noqa: BLE001 - any store failure becomes one readable line
        raise FidBenchError(f"cannot open the MLflow tracking store {uri}: {first_line(err)}") from None


def experiment_slug(name: str) -> str:
    """A folder name for an experiment's artifacts."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return slug or "experiment"


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None = None) -> str:
    """The id of experiment ``name``, created if missing (safe when several jobs create it at once).

    ``artifact_root`` (local stores only) puts the experiment's artifacts under
    ``artifact_root/<name>`` so that one folder holds the whole store.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (artifact_root / experiment_slug(name)).as_uri() if artifact_root is not None else None
        try:
            # the kind tag and a saved runs view make the UI open on the runs table (tracking.ui)
            experiment_id = client.create_experiment(name, artifact_location=location, tags=experiment_tags())
            client.set_experiment_tag(experiment_id, NOTE_TAG, experiment_description(experiment_id))
            return experiment_id
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(err):
                raise
            # another job created it between our read and our write
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise FidBenchError(
            f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or choose another tracking.experiment"
        )
    if experiment.experiment_id == DEFAULT_EXPERIMENT_ID and experiment.tags.get(DECLARED_ROOT_TAG) != (
        experiment.artifact_location
    ):
        # jobs told to log into MLflow's Default experiment: its implicit folder becomes a declared
        # root (``fid_bench.tracking.model_location``), so predict takes the models logged there
        client.set_experiment_tag(experiment.experiment_id, DECLARED_ROOT_TAG, experiment.artifact_location)
    return experiment.experiment_id


class OpenExperiment(NamedTuple):
    """An experiment ready for runs: the client of its store, its id, and the store's resolved URI."""

    client: MlflowClient
    experiment_id: str
    uri: str


def open_experiment(
    uri: str, name: str, artifact_root: str | Path | None = None, base: Path | None = None
) -> OpenExperiment:
    """Connect to the store at ``uri`` and make sure experiment ``name`` exists.

    Returns (client, experiment_id, resolved uri). ``artifact_root`` is used only for a local store
    (a tracking server keeps its own artifact location).
    """
    base = base or Path.cwd()
    uri = resolve_tracking_uri(uri, base)
    client = connect(uri)
    root = None
    if is_local_store(uri):
        root = Path(artifact_root or DEFAULT_ARTIFACT_ROOT).expanduser()
        root = (root if root.is_absolute() else base / root).resolve()
    try:
        with _store_lock(uri):
            return OpenExperiment(client, ensure_experiment(client, name, root), uri)
    except FidBenchError:
        raise
    except Exception as err:  # noqa: BLE001 - any store failure becomes one readable line
        raise FidBenchError(f"cannot use MLflow experiment {name!r} at {uri}: {first_line(err)}") from None


@dataclass(frozen=True)
class TrackingSettings:
    """Where a job's runs go (the ``tracking`` config group): store, experiment, artifact root.

    ``base`` is the folder relative store paths start from (the launch dir); ``system_metrics``
    samples CPU, memory (and GPU with pynvml) every few seconds during a job's run.
    """

    uri: str = DEFAULT_TRACKING_URI
    experiment: str = "Default"
    artifact_root: str | None = None
    system_metrics: bool = False
    base: Path | None = None

    @classmethod
    def of_config(cls, tracking: Mapping[str, Any] | None, base: Path | None = None) -> TrackingSettings:
        """From the ``tracking`` node (unset keys take their defaults)."""
        tracking = tracking or {}
        root = tracking.get("artifact_root")
        return cls(
            uri=str(tracking.get("uri") or DEFAULT_TRACKING_URI),
            experiment=str(tracking.get("experiment") or "Default"),
            artifact_root=str(root) if root else None,
            system_metrics=bool(tracking.get("system_metrics", False)),
            base=base,
        )

    def open(self) -> OpenExperiment:
        """Connect to the store and make sure the experiment exists (``open_experiment``)."""
        return open_experiment(self.uri, self.experiment, self.artifact_root, self.base)
