"""Shared fixtures: every test runs against its own tracking store, cache and working folder."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

# The suite makes no network request and nothing in it phones home. Set here, once, before any
# library reads them (MLflow sends usage events unless told not to); subprocesses inherit them.
NO_PHONE_HOME = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}
os.environ.update(NO_PHONE_HOME)

import pytest  # noqa: E402 - after the settings above, on purpose
from omegaconf import DictConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "fid_bench" / "conf"  # the packaged config (conf/ at the top is a link to it)
CIFAKE_ARCHIVE = REPO.parent / "shared" / "data" / "cifake.tar.gz"
# where the whole CIFAKE release is unpacked once (outside the repo; reused by later sessions)
DATA_CACHE = Path(os.environ.get("FID_BENCH_TEST_DATA", Path.home() / ".cache" / "fid_bench_data"))

# Small settings that keep a composed job fast on a CPU.
TINY = [
    "data.reader.n_real=48",
    "data.reader.n_fake=24",
    "data.reader.size=32",
    "features.num_workers=0",
    "features.batch_size=32",
]


#: every attempt of the suite to reach a host other than this machine ("host:port" or "dns:name")
NETWORK_ATTEMPTS: list[str] = []


def _loopback_host(host: object) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in ("localhost", "", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


def _numeric(host: object) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).split("%")[0])
    except ValueError:
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[list[str]]:
    """Refuse, record and finally fail on any connection to (or name lookup of) another host.

    Covers this process; subprocesses get the ``NO_PHONE_HOME`` settings. A refused connection
    fails like an unreachable network would, so the code under test takes its offline path.
    """
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def outside(address: object) -> bool:
        # AF_UNIX paths are local; AF_INET/AF_INET6 tuples start with the host
        return isinstance(address, tuple) and not _loopback_host(address[0])

    def refuse(what: str) -> OSError:
        NETWORK_ATTEMPTS.append(what)
        return OSError(errno.ENETUNREACH, f"the test suite makes no network request ({what})")

    def connect(self: socket.socket, address: object) -> None:
        if outside(address):
            raise refuse(f"{address[0]}:{address[1]}")  # type: ignore[index]
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if outside(address):
            raise refuse(f"{address[0]}:{address[1]}")  # type: ignore[index]
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        # a name lookup goes out to a resolver; a numeric address does not (connect decides on it)
        if host is not None and not _loopback_host(host) and not _numeric(host):
            NETWORK_ATTEMPTS.append(f"dns:{host}")
            raise socket.gaierror(socket.EAI_NONAME, f"the test suite makes no network request (dns:{host})")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield NETWORK_ATTEMPTS
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
            real_connect,
            real_connect_ex,
            real_getaddrinfo,
        )
    assert not NETWORK_ATTEMPTS, f"the suite tried to reach other hosts: {sorted(set(NETWORK_ATTEMPTS))}"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, made once: creating its tables takes seconds, copying it does not."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """Run in tmp_path with a private MLflow store and feature cache, and never touch the network."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlruns" / "mlflow.db"
    store.parent.mkdir(exist_ok=True)
    shutil.copyfile(empty_store, store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    # MLflow keeps a process-wide URI once set: point it at this test's store, not the previous one's
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    monkeypatch.setenv("FID_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose the real config through Hydra's compose API, as ``python -m fid_bench`` would.

    The Hydra config is registered too (``HydraConfig``), so code that asks for the run mode or
    output folder behaves as in a real single run.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):

        def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
            cfg = compose("config", overrides=[*(TINY if tiny else []), *overrides], return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.runtime.output_dir = os.getcwd()
                cfg.hydra.job.num = 0
            HydraConfig.instance().set_config(cfg)
            return cfg

        yield _compose
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # no Hydra config leaks into the next test


@pytest.fixture(scope="session")
def cifake_archive() -> Path:
    if not CIFAKE_ARCHIVE.exists():
        pytest.skip(f"CIFAKE archive not found at {CIFAKE_ARCHIVE}")
    return CIFAKE_ARCHIVE


@pytest.fixture(scope="session")
def cifake_unpacked(cifake_archive: Path) -> Path:
    """The whole CIFAKE release, unpacked once into ``DATA_CACHE`` (about 470 MB, tens of seconds).

    Unpacked into a temporary sibling and renamed when complete, under a file lock, so an
    interrupted or concurrent session never sees half a release. The folder name carries the
    archive's size, so a different archive is unpacked afresh.
    """
    import tarfile

    from filelock import FileLock

    target = DATA_CACHE / f"cifake-{cifake_archive.stat().st_size}"
    DATA_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "train").is_dir():
            partial = DATA_CACHE / f".partial-{target.name}-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            with tarfile.open(cifake_archive) as tf:
                tf.extractall(partial, filter="data")
            os.replace(partial, target)
    return target


@pytest.fixture(scope="session")
def cifake_small(cifake_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAKE-layout folder with the first 200 train and 100 test images of each class."""
    import tarfile

    root = tmp_path_factory.mktemp("cifake_small")
    want = {"train/FAKE": 200, "train/REAL": 200, "test/FAKE": 100, "test/REAL": 100}
    with tarfile.open(cifake_archive) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0]
            if member.isfile() and want.get(folder, 0) > 0:
                want[folder] -= 1
                tar.extract(member, root, filter="data")
                if not any(want.values()):
                    break
    return root
