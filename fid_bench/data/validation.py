"""Validate many image files at once: stat, hash and fully decode each, remembering good results.

Decoding every file is the only way to know which are broken, and it is the slow part of reading a
data set. Successful checks are cached in a small SQLite file under ``cache_dir``, keyed by
(absolute path, size, mtime_ns, decoder version and pixel limit), so a second read of 120k files costs a ``stat``
each. Failures are not cached: they are few, and a fixed file must be seen as fixed.
Checks run in a thread pool: Pillow's decoders and hashlib release the GIL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import PIL

from fid_bench.data.decode import (
    DECODER_VERSION,
    EMPTY_FILE,
    MISSING_FILE,
    UNDECODABLE,
    ImageDecodeError,
    check_image,
    max_pixels,
)

log = logging.getLogger(__name__)

CACHE_FILE = "image_checks.sqlite"


def _decoder() -> str:
    """What a cached "ok" depends on: our decoding rules, Pillow, and the pixel limit in force."""
    return f"{DECODER_VERSION}/pillow-{PIL.__version__}/max-{max_pixels()}"


_CHUNK = 256  # files per pool task: amortises scheduling overhead on tiny images


@dataclass(frozen=True)
class FileCheck:
    """Outcome for one file: ``sha1`` when usable, else a ``reason`` code and a one-line ``message``."""

    path: str
    sha1: str = ""
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def default_workers() -> int:
    # a few more threads than cores: part of each check is waiting on the file system
    return min(8, (os.cpu_count() or 1) + 2)


def validate_files(
    paths: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    desc: str = "checking images",
) -> list[FileCheck]:
    """Check every path (absolute); results align with ``paths``."""
    from tqdm.auto import tqdm

    results: list[FileCheck | None] = [None] * len(paths)
    stats: dict[int, tuple[int, int]] = {}
    for i, path in enumerate(paths):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            results[i] = FileCheck(path, reason=MISSING_FILE, message=f"{path}: file not found")
            continue
        except OSError as err:
            results[i] = FileCheck(path, reason=UNDECODABLE, message=f"{path}: cannot stat ({err.strerror})")
            continue
        if not stat.S_ISREG(info.st_mode):
            results[i] = FileCheck(path, reason=UNDECODABLE, message=f"{path}: not a regular file")
        elif info.st_size == 0:
            results[i] = FileCheck(path, reason=EMPTY_FILE, message=f"{path}: empty file (0 bytes)")
        else:
            stats[i] = (info.st_size, info.st_mtime_ns)

    cache = _CheckCache(Path(cache_dir).expanduser()) if cache_dir is not None else None
    known = cache.lookup([paths[i] for i in stats]) if cache is not None else {}
    todo: list[int] = []
    for i, key in stats.items():
        hit = known.get(paths[i])
        if hit is not None and hit[:2] == key:
            results[i] = FileCheck(paths[i], sha1=hit[2])
        else:
            todo.append(i)

    if todo:
        chunks = [todo[k : k + _CHUNK] for k in range(0, len(todo), _CHUNK)]
        fresh: list[tuple[str, int, int, str]] = []
        with (
            ThreadPoolExecutor(max_workers=workers or default_workers()) as pool,
            tqdm(total=len(todo), desc=desc, unit="img", disable=None) as bar,
        ):
            for chunk, checks in zip(
                chunks, pool.map(_check_chunk, [[paths[i] for i in c] for c in chunks]), strict=True
            ):
                for i, check in zip(chunk, checks, strict=True):
                    results[i] = check
                    if check.ok:
                        fresh.append((paths[i], *stats[i], check.sha1))
                bar.update(len(chunk))
        if cache is not None and fresh:
            cache.store(fresh)
    log.debug("checked %d files: %d from cache, %d decoded", len(paths), len(stats) - len(todo), len(todo))
    return [r for r in results if r is not None]


def _check_chunk(paths: list[str]) -> list[FileCheck]:
    out = []
    for path in paths:
        try:
            out.append(FileCheck(path, sha1=check_image(path).sha1))
        except ImageDecodeError as err:
            out.append(FileCheck(path, reason=err.reason, message=str(err)))
    return out


class _CheckCache:
    """SQLite table path -> (size, mtime_ns, decoder, sha1); any SQLite trouble disables caching."""

    def __init__(self, cache_dir: Path) -> None:
        self.file = cache_dir / CACHE_FILE

    def _connect(self) -> sqlite3.Connection:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        # several benchmark jobs may read the same data set at once: wait for the lock, don't fail
        con = sqlite3.connect(self.file, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(
            "CREATE TABLE IF NOT EXISTS checks (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
            " decoder TEXT, sha1 TEXT)"
        )
        return con

    def lookup(self, paths: list[str]) -> dict[str, tuple[int, int, str]]:
        if not paths:
            return {}
        # one indexed range scan over the common directory instead of one query per file
        prefix = os.path.commonprefix(paths)  # by characters: far cheaper than commonpath on 120k paths
        prefix = prefix[: prefix.rfind(os.sep) + 1] or os.sep
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        wanted = set(paths)
        try:
            con = self._connect()
            try:
                rows = con.execute(
                    "SELECT path, size, mtime_ns, sha1 FROM checks WHERE path >= ? AND path < ? AND decoder = ?",
                    (prefix, upper, _decoder()),
                ).fetchall()
            finally:
                con.close()
        except (sqlite3.Error, OSError) as err:  # a read-only or full cache folder too
            log.warning("image check cache %s unusable (%s); checking every file", self.file, err)
            return {}
        return {p: (size, mtime, sha1) for p, size, mtime, sha1 in rows if p in wanted}

    def store(self, rows: list[tuple[str, int, int, str]]) -> None:
        decoder = _decoder()
        try:
            con = self._connect()
            try:
                with con:
                    con.executemany(
                        "INSERT OR REPLACE INTO checks (path, size, mtime_ns, decoder, sha1)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [(p, size, mtime, decoder, sha1) for p, size, mtime, sha1 in rows],
                    )
            finally:
                con.close()
        except (sqlite3.Error, OSError) as err:  # a read-only or full cache folder too
            log.warning("could not update image check cache %s (%s)", self.file, err)
