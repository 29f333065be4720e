"""Where studies live: an Optuna RDB storage that several processes and machines can share."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError, first_line

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
#: seconds a SQLite writer waits for another process's lock before giving up
SQLITE_TIMEOUT = 60


def resolve_storage_url(url: str, base: Path) -> str:
    """Make a SQLite file path absolute (relative to ``base``, the launch directory); others unchanged."""
    if not url.startswith(SQLITE_PREFIX):
        return url
    rest = url[len(SQLITE_PREFIX) :]
    if rest in ("", ":memory:"):
        raise FidBenchError(
            "hparams_search.storage: an in-memory SQLite study cannot be resumed or shared; give a file"
        )
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = base / path
    return SQLITE_PREFIX + path.resolve().as_posix()


def display_url(url: str) -> str:
    """The URL with any password hidden (for logs, tags and error messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage itself
        return url.split("@")[-1] if "@" in url else url


@contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Serialise schema creation of a fresh SQLite file between processes on this machine.

    Two processes creating Optuna's tables at once can fail with "table already exists"; a lock
    file next to the database makes the second wait. Server databases handle this themselves
    (and creation is retried below anyway).
    """
    from filelock import FileLock

    if not url.startswith(SQLITE_PREFIX):
        yield
        return
    with FileLock(url[len(SQLITE_PREFIX) :] + ".lock"):
        yield


def open_storage(
    url: str, base: Path, *, heartbeat_interval: int | None = None, attempts: int = 5
) -> optuna.storages.RDBStorage:
    """An ``RDBStorage`` for ``url`` (a SQLite file is created with its folder); one-line errors."""
    import optuna

    url = resolve_storage_url(str(url), base)
    if url.startswith(SQLITE_PREFIX):
        folder = Path(url[len(SQLITE_PREFIX) :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FidBenchError(f"hparams_search.storage: cannot create {folder}: {err.strerror}") from None
        # concurrent trials write to one file: wait for the lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        # long studies outlive idle server connections
        engine_kwargs = {"pool_pre_ping": True}
    kwargs = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": 2 * int(heartbeat_interval)}
    for attempt in range(1, attempts + 1):
        try:
            with _creation_lock(url):
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except ImportError as err:
            raise FidBenchError(
                f"hparams_search.storage={display_url(url)}: the database driver is not installed ({err})"
            ) from None
        except Exception as err:  # noqa: BLE001 - drivers raise many types; the user needs one line
            if attempt == attempts:
                raise FidBenchError(
                    f"hparams_search.storage: cannot open {display_url(url)}: {first_line(err)}"
                ) from None
            # another process may be creating the schema right now
            log.debug("opening %s failed (%s); retrying", display_url(url), first_line(err))
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")
