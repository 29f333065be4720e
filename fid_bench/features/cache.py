"""Content-addressed on-disk feature cache: (encoder identity, image sha1) -> float32 vector.

Layout::

    <root>/<slug>-<sha256(identity)[:16]>/
        meta.json                      identity, dim, dtype, encoder params, created, fid_bench version
        chunk-<time>-<pid>-<rand>.feats   one file per ``put`` (written by extraction as it goes)
        pack-<time>-<pid>-<rand>.feats    chunks merged by ``consolidate``
        .tmp-*                         files being written (never read)
        consolidate.lock               held while merging

The key is the image's content hash, so renaming a file keeps its entry and editing it does not.

Each ``.feats`` file is two ``.npy`` arrays back to back: ``keys`` (``S40``, the hex sha1s) then
``feats`` (``float32 [n, dim]``). Reading the keys touches only the head of the file; the features
are memory-mapped and only the requested rows are read.

Why it is safe without a global lock:

* Files are immutable once named. A writer writes ``.tmp-<unique>`` and ``os.replace``s it to a
  unique final name, so a reader sees a whole file or no file, and concurrent writers never
  touch the same file. A run killed mid-write leaves only a ``.tmp-`` file, which readers ignore
  (``consolidate`` removes stale ones) -- every chunk written before the kill stays readable.
* Two jobs may extract the same image at the same time: the same key then lives in two files.
  Readers tolerate duplicates (any copy is served; they hold the same features) and consolidation
  keeps one.
* A file whose size does not match its headers (copied partially, disk full on a filesystem
  without atomic rename) is skipped with a warning, so its rows read as missing and are
  re-extracted.

Why it is fast for 100k+ rows: the number of files stays small. ``consolidate`` (called by
extraction when it finishes) merges chunk files into one pack, streaming rows so memory stays
bounded, under a non-blocking file lock (if another process is merging, this one skips). It
writes the pack before deleting the chunks, so every key is in some file at every moment; a
reader that lists a chunk just deleted re-lists and finds the pack. When packs pile up they are
merged too. Lookups go through an in-memory sorted index of all keys (``np.searchsorted``),
refreshed from the directory listing on each call; files already indexed are never re-read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fid_bench import __version__
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".feats"
KEY_DTYPE = np.dtype("S40")
FEAT_DTYPE = np.dtype("<f4")
TMP_PREFIX = ".tmp-"
# merge chunk files into a pack once there are this many; merge packs once there are this many
CHUNKS_PER_PACK = 2
MAX_PACKS = 4
# a temp file older than this belongs to a writer that died
STALE_TMP_SECONDS = 3600.0
# rows copied at a time while merging (bounds memory during consolidation)
COPY_ROWS = 8192

_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def identity_dirname(identity: str) -> str:
    """Directory name for an encoder identity: a readable slug plus a hash of the full string."""
    import hashlib

    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", identity.split("{", 1)[0]).strip("-").lower()[:32] or "encoder"
    return f"{slug}-{digest}"


@dataclass
class _File:
    """One immutable ``.feats`` file: its keys in memory, its features memory-mapped on demand."""

    path: Path
    keys: np.ndarray
    offset: int
    dim: int
    _feats: np.ndarray | None = None

    @property
    def feats(self) -> np.ndarray:
        if self._feats is None:
            n = len(self.keys)
            if n == 0:
                self._feats = np.empty((0, self.dim), FEAT_DTYPE)
            else:
                self._feats = np.memmap(
                    self.path, dtype=FEAT_DTYPE, mode="r", offset=self.offset, shape=(n, self.dim)
                )
        return self._feats

    def release(self) -> None:
        """Drop the memory map: its pages count in the process's RSS for as long as it is mapped,
        so readers release it after each block instead of holding a whole file's pages."""
        self._feats = None


class CorruptFileError(Exception):
    """A ``.feats`` file that is not complete or not in this format."""


def _read_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except (ValueError, OSError, SyntaxError) as err:
        raise CorruptFileError(f"bad header ({err})") from None
    if fortran:
        raise CorruptFileError("unexpected Fortran order")
    return shape, dtype


def _open_file(path: Path) -> _File:
    """Read the keys and locate the features of one file, checking that it is complete."""
    size = path.stat().st_size
    with open(path, "rb") as fp:
        kshape, kdtype = _read_header(fp)
        if kdtype != KEY_DTYPE or len(kshape) != 1:
            raise CorruptFileError(f"unexpected key array {kdtype} {kshape}")
        n = kshape[0]
        raw = fp.read(n * KEY_DTYPE.itemsize)
        if len(raw) != n * KEY_DTYPE.itemsize:
            raise CorruptFileError("truncated keys")
        keys = np.frombuffer(raw, dtype=KEY_DTYPE)
        fshape, fdtype = _read_header(fp)
        if fdtype != FEAT_DTYPE or len(fshape) != 2 or fshape[0] != n:
            raise CorruptFileError(f"unexpected feature array {fdtype} {fshape}")
        offset = fp.tell()
    expected = offset + n * fshape[1] * FEAT_DTYPE.itemsize
    if size != expected:
        raise CorruptFileError(f"size {size} bytes, expected {expected} (partially written)")
    return _File(path=path, keys=keys, offset=offset, dim=int(fshape[1]))


def _unique_name(kind: str) -> str:
    return f"{kind}-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"


def _discard(path: Path) -> None:
    """Remove a temporary file after a failed write; a read-only folder refuses even that, and the
    write's own error is the one to report."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _atomic_write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}.json")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)  # a full disk leaves no half-written file behind
        raise


def as_keys(sha1s) -> np.ndarray:
    """Validate hex sha1 strings and turn them into the cache's key array."""
    sha1s = list(sha1s)
    bad = next((s for s in sha1s if not isinstance(s, str) or not _SHA1_RE.match(s)), None)
    if bad is not None:
        raise ValueError(f"not a lowercase hex sha1: {bad!r}")
    return np.asarray(sha1s, dtype=KEY_DTYPE) if sha1s else np.empty(0, KEY_DTYPE)


class FeatureCache:
    """Features of one encoder identity, keyed by image content sha1 (see the module docstring)."""

    def __init__(self, root: Path, identity: str, meta: dict | None = None) -> None:
        self.root = Path(root)
        self.identity = identity
        self.dir = self.root / identity_dirname(identity)
        self._meta_extra = dict(meta or {})
        self._files: dict[str, _File] = {}
        self._bad: set[str] = set()
        self._index_names: tuple[str, ...] | None = None
        self._sorted_keys = np.empty(0, KEY_DTYPE)
        self._sorted_file = np.empty(0, np.int32)
        self._sorted_row = np.empty(0, np.int64)
        self._index_files: list[_File] = []
        meta_on_disk = self.read_meta()
        if meta_on_disk is not None and meta_on_disk.get("identity") != identity:
            raise FidBenchError(
                f"feature cache folder {self.dir} belongs to another encoder identity "
                f"({meta_on_disk.get('identity')!r}); remove the folder"
            )

    # ----------------------------------------------------------------- reading
    @property
    def dim(self) -> int | None:
        meta = self.read_meta()
        return None if meta is None else int(meta["dim"])

    def read_meta(self) -> dict | None:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):
            # meta.json is written atomically, so this is outside damage: the chunks still hold the data
            log.warning("feature cache %s: unreadable meta.json", self.dir)
            return None

    def update_meta(self, extra: dict[str, Any]) -> None:
        """Add encoder details learnt later (e.g. resolved weights); written with the first ``put``."""
        self._meta_extra.update(extra)

    def missing(self, sha1s) -> list[str]:
        """The sha1s not in the cache, each once, in first-seen order."""
        keys = as_keys(sha1s)
        found = self._lookup(keys)[0] >= 0
        out, seen = [], set()
        for s, hit in zip(sha1s, found, strict=True):
            if not hit and s not in seen:
                seen.add(s)
                out.append(s)
        return out

    def contains(self, sha1s) -> np.ndarray:
        """Boolean mask: which of ``sha1s`` have features."""
        return self._lookup(as_keys(sha1s))[0] >= 0

    def get(self, sha1s) -> np.ndarray:
        """Features for ``sha1s`` (float32 ``[n, dim]``, in the given order); KeyError if any is missing."""
        keys = as_keys(sha1s)
        for _attempt in range(5):
            file_idx, row = self._lookup(keys)
            if (file_idx < 0).any():
                n = int((file_idx < 0).sum())
                raise KeyError(f"{n} of {len(keys)} sha1s are not in the feature cache {self.dir}")
            dim = self.dim if self._index_files == [] else self._index_files[0].dim
            out = np.empty((len(keys), dim or 0), dtype=np.float32)
            try:
                for f in np.unique(file_idx):
                    sel = np.flatnonzero(file_idx == f)
                    rows = row[sel]
                    order = np.argsort(rows, kind="stable")  # read the memory map front to back
                    source = self._index_files[f]
                    # block by block, unmapping in between: peak memory is the result, not the file too
                    for start in range(0, len(order), COPY_ROWS):
                        block = order[start : start + COPY_ROWS]
                        out[sel[block]] = source.feats[rows[block]]
                        source.release()
                return out
            except FileNotFoundError:
                # consolidated away between listing and reading: the pack has the rows now
                self._index_names = None
                self._files.clear()
        raise OSError(f"feature cache {self.dir} keeps changing under the reader")

    def __len__(self) -> int:
        self._refresh()
        return int(len(np.unique(self._sorted_keys)))

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._refresh()
        file_idx = np.full(len(keys), -1, dtype=np.int32)
        row = np.zeros(len(keys), dtype=np.int64)
        if len(self._sorted_keys) and len(keys):
            pos = np.searchsorted(self._sorted_keys, keys)
            pos = np.minimum(pos, len(self._sorted_keys) - 1)
            hit = self._sorted_keys[pos] == keys
            file_idx[hit] = self._sorted_file[pos[hit]]
            row[hit] = self._sorted_row[pos[hit]]
        return file_idx, row

    def _list(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(SUFFIX) and not n.startswith("."))

    def _refresh(self) -> None:
        """Bring the index up to date with the files on disk (new files are read, gone ones dropped)."""
        for _attempt in range(5):
            names = self._list()
            try:
                for name in names:
                    if name not in self._files and name not in self._bad:
                        try:
                            self._files[name] = _open_file(self.dir / name)
                        except CorruptFileError as err:
                            self._bad.add(name)
                            log.warning("feature cache: ignoring %s: %s", self.dir / name, err)
                break
            except FileNotFoundError:
                continue  # a chunk was merged away while listing; list again
        live = tuple(n for n in names if n in self._files)
        for gone in set(self._files) - set(live):
            del self._files[gone]
        if live == self._index_names:
            return
        files = [self._files[n] for n in live]
        dims = {f.dim for f in files if len(f.keys)}
        if len(dims) > 1:
            raise OSError(f"feature cache {self.dir} mixes feature sizes {sorted(dims)}")
        if files:
            keys = np.concatenate([f.keys for f in files])
            fidx = np.concatenate([np.full(len(f.keys), i, np.int32) for i, f in enumerate(files)])
            rows = np.concatenate([np.arange(len(f.keys), dtype=np.int64) for f in files])
            order = np.argsort(keys, kind="stable")
            self._sorted_keys, self._sorted_file, self._sorted_row = keys[order], fidx[order], rows[order]
        else:
            self._sorted_keys = np.empty(0, KEY_DTYPE)
            self._sorted_file = np.empty(0, np.int32)
            self._sorted_row = np.empty(0, np.int64)
        self._index_files = files
        self._index_names = live

    # ----------------------------------------------------------------- writing
    def put(self, sha1s, feats: np.ndarray) -> int:
        """Store features for ``sha1s`` as one new chunk file; returns the number of new rows.

        Rows already cached and repeated sha1s are stored once.
        """
        keys = as_keys(sha1s)
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[0] != len(keys):
            raise ValueError(f"features must be [{len(keys)}, dim], got {list(feats.shape)}")
        if not np.isfinite(feats).all():
            bad = int((~np.isfinite(feats).all(axis=1)).sum())
            raise ValueError(f"{bad} feature rows contain NaN or infinity; refusing to cache them")
        dim = feats.shape[1]
        known = self.dim
        if known is not None and known != dim:
            raise ValueError(f"feature cache {self.dir} holds dim {known}, got dim {dim}")
        _, first = np.unique(keys, return_index=True)
        keep = np.sort(first)
        keep = keep[self._lookup(keys[keep])[0] < 0]
        if len(keep) == 0:
            return 0
        created = not self.dir.is_dir()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if known is None:
                self._write_meta(dim)
            self._write_file(_unique_name("chunk"), keys[keep], feats[keep].astype(FEAT_DTYPE, copy=False))
        except OSError as err:
            if created:
                self._remove_if_unused()
            raise self._storage_error(err) from None
        return len(keep)

    def _storage_error(self, err: OSError) -> FidBenchError:
        """One line for a cache that cannot be written (full disk, read-only folder, no permission)."""
        return FidBenchError(
            f"feature cache {self.root}: cannot write ({err.strerror or err}); free space or point "
            "features.cache_dir (FID_BENCH_CACHE_DIR) at a writable folder"
        )

    def _remove_if_unused(self) -> None:
        """Undo a folder this process created for a write that failed: only while it holds nothing but
        the metadata (a concurrent writer's chunk keeps it)."""
        try:
            if set(os.listdir(self.dir)) <= {"meta.json"}:
                (self.dir / "meta.json").unlink(missing_ok=True)
                self.dir.rmdir()
        except OSError:
            pass

    def _write_meta(self, dim: int) -> None:

        meta = {
            "identity": self.identity,
            "dim": dim,
            "dtype": FEAT_DTYPE.name,
            "format": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fid_bench_version": __version__,
            "encoder": self._meta_extra,
        }
        # concurrent first writers write the same content; os.replace makes the last one win whole
        _atomic_write_json(self.dir / "meta.json", meta)

    def _write_file(self, name: str, keys: np.ndarray, feats: np.ndarray) -> Path:
        tmp = self.dir / f"{TMP_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
        try:
            with open(tmp, "wb") as fp:
                np.lib.format.write_array(fp, np.ascontiguousarray(keys, dtype=KEY_DTYPE), allow_pickle=False)
                np.lib.format.write_array(
                    fp, np.ascontiguousarray(feats, dtype=FEAT_DTYPE), allow_pickle=False
                )
                fp.flush()
                os.fsync(fp.fileno())
            final = self.dir / name
            os.replace(tmp, final)
        except BaseException:
            _discard(tmp)
            raise
        return final

    # ----------------------------------------------------------------- maintenance
    def consolidate(self, *, force: bool = False) -> bool:
        """Merge chunk files into a pack (and packs together when there are many).

        Non-blocking: returns False without waiting if another process holds the lock or there is
        nothing worth merging. ``force`` merges everything into one pack.
        """
        if not self.dir.is_dir():
            return False
        try:
            return self._consolidate(force)
        except OSError as err:
            # merging only saves files: a read-only (complete) cache or a full disk keeps its chunks
            log.warning("feature cache %s: files not merged (%s)", self.dir, err.strerror or err)
            return False

    def _consolidate(self, force: bool) -> bool:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.dir / "consolidate.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        try:
            self._remove_stale_tmp()
            self._refresh()
            names = list(self._index_names or ())
            chunks = [n for n in names if n.startswith("chunk-")]
            packs = [n for n in names if n.startswith("pack-")]
            if force or len(packs) + (1 if chunks else 0) > MAX_PACKS:
                merge = chunks + packs
            elif len(chunks) >= CHUNKS_PER_PACK:
                merge = chunks
            else:
                merge = []
            if len(merge) < 2 and not self._bad:
                return False
            if merge:
                self._merge([self._files[n] for n in merge])
            for name in list(self._bad):
                # never renamed into place by a writer, so no writer is still filling it
                (self.dir / name).unlink(missing_ok=True)
                self._bad.discard(name)
            return True
        finally:
            lock.release()

    def _merge(self, files: list[_File]) -> None:
        keys = np.concatenate([f.keys for f in files])
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)
        bounds = np.cumsum([0] + [len(f.keys) for f in files])
        dim = files[0].dim
        tmp = self.dir / f"{TMP_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
        try:
            with open(tmp, "wb") as fp:
                np.lib.format.write_array(fp, keys[first], allow_pickle=False)
                header = {"descr": np.lib.format.dtype_to_descr(FEAT_DTYPE), "fortran_order": False}
                header["shape"] = (len(first), dim)
                np.lib.format.write_array_header_1_0(fp, header)
                for i, f in enumerate(files):
                    rows = first[(first >= bounds[i]) & (first < bounds[i + 1])] - bounds[i]
                    for start in range(0, len(rows), COPY_ROWS):
                        fp.write(np.ascontiguousarray(f.feats[rows[start : start + COPY_ROWS]]).tobytes())
                        f.release()  # the merged files' pages need not stay mapped
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, self.dir / _unique_name("pack"))
        except BaseException:
            _discard(tmp)
            raise
        for f in files:
            f.path.unlink(missing_ok=True)
        self._index_names = None

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for p in self.dir.glob(f"{TMP_PREFIX}*"):
            try:
                if now - p.stat().st_mtime > STALE_TMP_SECONDS:
                    p.unlink()
            except FileNotFoundError:
                pass
