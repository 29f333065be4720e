"""Per-file work of the audit over the distinct contents of a table: chunks, worker processes, cache.

Owns ``map_chunks`` (a function over chunks of paths, in worker processes for large jobs) and
``cached_by_sha1`` (its results keyed by content hash, kept in ``cache_dir/audit/``). Both the
header scan (``headers``) and the perceptual hash (``hashing``) go through here.

May import: nothing of fid_bench (numpy, pandas and the standard library only).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fid_bench.errors import one_line

log = logging.getLogger(__name__)

#: bump when the header attributes or the perceptual hash change (invalidates the audit cache)
AUDIT_CACHE_VERSION = 1
#: tables with at least this many distinct files are scanned in worker processes
PARALLEL_MIN = 4000
CHUNK_SIZE = 1000

ChunkFn = Callable[[list[str]], list[tuple]]


def map_chunks(fn: ChunkFn, paths: list[str], workers: int) -> list:
    """``fn`` over chunks of ``paths``; in ``workers`` processes when asked and the job is large.

    Header parsing is CPU-bound Python, so threads do not help (measured slower than one thread);
    processes do, but spawned ones re-import the caller's main script, which must then be guarded
    by ``if __name__ == "__main__"`` (the ``fid-bench`` and ``python -m fid_bench`` entry points
    are). A pool that breaks falls back to one process instead of failing the audit.
    """
    chunks = [paths[i : i + CHUNK_SIZE] for i in range(0, len(paths), CHUNK_SIZE)]
    if workers > 1 and len(paths) >= PARALLEL_MIN:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            # spawn, not fork: the caller may hold threads (MLflow, loggers) that fork would copy mid-state
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                parts = list(pool.map(fn, chunks))
            return [item for part in parts for item in part]
        except (BrokenProcessPool, OSError, RuntimeError) as err:
            detail = one_line(err)
            log.warning("audit: worker processes failed (%s); continuing in one process", detail)
    return [item for c in chunks for item in fn(c)]


def cached_by_sha1(
    kind: str, reps: pd.DataFrame, columns: list[str], fn: ChunkFn, workers: int, cache_dir: Path | None
) -> pd.DataFrame:
    """Per-sha1 results of ``fn(paths)``, reusing ``cache_dir/audit/<kind>-v*.parquet`` when given.

    Results depend only on the file bytes, so the content hash is a safe key. Failures are not
    cached (a file may be fixed in place). The cache is replaced atomically; concurrent writers
    may drop each other's new entries but never corrupt it.
    """
    cached = pd.DataFrame(columns=columns, index=pd.Index([], name="sha1"))
    path = None
    if cache_dir is not None:
        path = Path(cache_dir).expanduser() / "audit" / f"{kind}-v{AUDIT_CACHE_VERSION}.parquet"
        if path.exists():
            try:
                cached = pd.read_parquet(path)
            except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
                log.warning("audit cache %s unreadable (%s); rebuilding it", path, err)
    cached = cached[~cached.index.duplicated(keep="last")]
    todo = reps[~reps["sha1"].isin(cached.index)]
    if len(todo):
        t0 = time.perf_counter()
        rows = map_chunks(fn, todo["path"].tolist(), workers)
        fresh = pd.DataFrame(rows, columns=columns, index=pd.Index(todo["sha1"].to_numpy(), name="sha1"))
        log.info("audit: %s of %d files in %.1f s", kind, len(todo), time.perf_counter() - t0)
        cached = fresh if cached.empty else pd.concat([cached, fresh])
        if path is not None:
            keep = cached[cached["error"] == ""]
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                keep.to_parquet(tmp)
                os.replace(tmp, path)
            except OSError as err:  # a read-only or full cache folder: the audit goes on uncached
                log.warning("audit cache %s not written (%s)", path, err.strerror or err)
                with contextlib.suppress(OSError):  # a read-only folder refuses even this
                    tmp.unlink(missing_ok=True)
    return cached.loc[reps["sha1"].to_numpy()]
