"""Streaming feature extraction through the content-addressed cache.

``extract_features(encoder, paths, sha1s, cache_dir)`` returns one row per input path:

1. Look up every sha1 in the cache of the encoder's identity. The identity is computed without
   importing torch (see ``encoders``), and the device for ``device="auto"`` is guessed without
   it too, so a fully cached call never imports torch nor builds the network.
2. Extract only the missing images, each distinct sha1 once: a torch ``DataLoader`` decodes
   (``data.decode.load_rgb``) and applies ``encoder.transform`` in ``num_workers`` worker
   processes, the main process runs ``encoder.encode`` under ``torch.inference_mode`` (bf16
   autocast, pinned memory and channels_last for CNNs on CUDA). Features are written to the
   cache in chunks as they come (every ``chunk_rows`` rows or ``CHUNK_SECONDS``), so memory does
   not grow with the number of images, and a run killed half-way keeps what it extracted.
3. Read the rows back from the cache in input order: the feature matrix is the only thing whose
   size grows with the number of images.

Every worker re-hashes the file it decodes: an image edited since the samples table was built
would otherwise be cached under its old content hash. Such a file, or one that no longer
decodes, stops the extraction with a ``FidBenchError`` naming it (features extracted before it
stay cached).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fid_bench import signals
from fid_bench.data.decode import ImageDecodeError, load_rgb
from fid_bench.errors import FidBenchError
from fid_bench.features.cache import FeatureCache

log = logging.getLogger(__name__)

#: flush extracted rows to the cache at least this often (bounds what a killed run loses)
CHUNK_SECONDS = 30.0
#: default rows per cache chunk
CHUNK_ROWS = 2048
#: the main process's extraction time, by what it was doing: loading the encoder (and starting the
#: workers), waiting for decoded batches, encoding, writing the cache
PROFILE = ("load", "wait", "encode", "write")
#: the cache folder under ``features.cache_dir``
CACHE_SUBDIR = "features"


def feature_cache(encoder: Any, cache_dir: Path) -> FeatureCache:
    """The cache ``extract_features`` uses for ``encoder`` (as currently prepared) under ``cache_dir``."""
    return FeatureCache(
        Path(cache_dir).expanduser() / CACHE_SUBDIR, encoder.identity, meta=encoder.describe()
    )


def extract_features(
    encoder: Any,
    paths: Sequence[str],
    sha1s: Sequence[str],
    cache_dir: Path,
    *,
    batch_size: int = 64,
    num_workers: int = 2,
    device: str = "auto",
    chunk_rows: int = CHUNK_ROWS,
    progress: bool | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Features for ``paths`` (float32 ``[len(paths), D]``, aligned with the input) and stats.

    ``sha1s`` are the content hashes of the files (the samples table's ``sha1`` column); rows
    with the same sha1 share one extraction. Stats: ``n_images`` (rows), ``n_unique``,
    ``n_cached`` (rows already cached), ``n_extracted`` (distinct images computed now),
    ``cache_hit_ratio`` (``n_cached / n_images``), ``images_per_s`` (``n_images / seconds``, the
    throughput of the whole call), ``extract_images_per_s`` (distinct images computed per second
    of extraction, 0 when nothing was extracted), ``seconds``; and the throughput every run logs:
    ``extract/seconds`` (decoding and encoding the images not cached, cache writes included: 0 when
    every image was cached) and ``extract/images_per_s`` (distinct images computed per second of it),
    with ``extract/{load,wait,encode,write}_seconds``: the main process's share of it loading the
    encoder, waiting for the decode workers (decoding beyond what hides behind encoding), encoding
    and writing the cache.
    ``progress``: show a progress bar with images/s on stderr (None: only when stderr is a terminal
    and not under pytest).
    """
    t0 = time.perf_counter()
    if not hasattr(encoder, "extract"):  # not of the Encoder contract (its lifecycle, its identity)
        raise FidBenchError(
            f"extract_features: {type(encoder).__name__} is no Encoder; wrap it with features.encoders.as_encoder"
        )
    paths = [str(p) for p in paths]
    sha1s = [str(s).lower() for s in sha1s]
    if len(paths) != len(sha1s):
        raise FidBenchError(f"extract_features: {len(paths)} paths but {len(sha1s)} sha1s")
    if int(batch_size) < 1 or int(num_workers) < 0 or int(chunk_rows) < 1:
        raise FidBenchError(
            "features.batch_size must be >= 1 and features.num_workers >= 0, "
            f"got {batch_size} and {num_workers}"
        )
    unhashed = [p for p, s in zip(paths, sha1s, strict=True) if not s]
    if unhashed:
        raise FidBenchError(
            f"{len(unhashed)} image(s) have no content hash (unreadable when the data was read), "
            f"e.g. {unhashed[0]}; leave them out of feature extraction"
        )

    encoder.prepare(_guess_device(device))
    cache = feature_cache(encoder, cache_dir)
    try:
        todo = cache.missing(sha1s)
    except ValueError as err:
        raise FidBenchError(f"extract_features: {err}") from None
    n_unique = len(set(sha1s))
    seconds_extracting = 0.0
    profile = dict.fromkeys(PROFILE, 0.0)
    if todo:
        resolved = _resolve_device(device)
        if resolved != encoder.device:
            # the guess made without torch was wrong: the identity (compute dtype) may differ
            encoder.prepare(resolved)
            cache = feature_cache(encoder, cache_dir)
            todo = cache.missing(sha1s)
    todo_set = set(todo)
    n_cached = sum(1 for s in sha1s if s not in todo_set)
    msg = f"features: {n_cached} of {len(sha1s)} images cached, extracting {len(todo)} with {encoder.short}"
    if n_unique < len(sha1s):
        msg += f" ({len(sha1s) - n_unique} duplicate rows share features)"
    log.info(msg)

    if todo:
        first_path: dict[str, str] = {}
        for p, s in zip(paths, sha1s, strict=True):
            first_path.setdefault(s, p)
        t1 = time.perf_counter()
        profile = _extract(
            encoder,
            [first_path[s] for s in todo],
            todo,
            cache,
            batch_size=int(batch_size),
            num_workers=int(num_workers),
            chunk_rows=int(chunk_rows),
            progress=progress,
        )
        t2 = time.perf_counter()
        cache.consolidate()
        profile["write"] += time.perf_counter() - t2
        seconds_extracting = time.perf_counter() - t1

    feats = cache.get(sha1s)
    seconds = time.perf_counter() - t0
    stats = {
        "n_images": float(len(sha1s)),
        "n_unique": float(n_unique),
        "n_cached": float(n_cached),
        "n_extracted": float(len(todo)),
        "cache_hit_ratio": n_cached / len(sha1s) if sha1s else 1.0,
        "images_per_s": len(sha1s) / seconds if seconds > 0 else 0.0,
        "extract_images_per_s": len(todo) / seconds_extracting if seconds_extracting > 0 else 0.0,
        "seconds": seconds,
        "extract/seconds": seconds_extracting,
        "extract/images_per_s": len(todo) / seconds_extracting if seconds_extracting > 0 else 0.0,
        # where the main process's extraction time went (sums to about extract/seconds)
        **{f"extract/{k}_seconds": v for k, v in profile.items()},
    }
    if todo:
        log.info(
            "features: %d images extracted in %.1f s (%.1f images/s) with %s",
            len(todo),
            seconds_extracting,
            stats["extract/images_per_s"],
            encoder.short,
        )
    return feats, stats


# --------------------------------------------------------------------------- devices
def _guess_device(device: str) -> str:
    """The device for ``device`` without importing torch (when torch is not imported yet)."""
    device = str(device).strip().lower()
    if device == "cpu" or device.startswith("cuda"):
        return device
    if device != "auto":
        raise FidBenchError(f"features.device must be auto, cpu or cuda[:N], got {device!r}")
    if "torch" in sys.modules:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    # no NVIDIA driver, or every GPU hidden: certainly no CUDA (checked again with torch if extracting)
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    return "cuda" if os.path.exists("/proc/driver/nvidia/version") and not hidden else "cpu"


def _resolve_device(device: str) -> str:
    import torch

    device = str(device).strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FidBenchError(f"features.device={device} but CUDA is not available; use auto or cpu")
    return device


# --------------------------------------------------------------------------- the loader
class _Images:
    """Map-style dataset for the DataLoader: (position, transformed image or None, error or None).

    Failures come back as values, not exceptions: a worker's exception reaches the main process
    wrapped in a multi-line traceback, while the user needs one line naming the file.
    """

    def __init__(
        self,
        paths: Sequence[str],
        sha1s: Sequence[str],
        transform: Any,
        draft: tuple[int, int] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.sha1s = list(sha1s)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:

        path = self.paths[i]
        try:
            with open(path, "rb") as fp:
                actual = hashlib.sha1(fp.read()).hexdigest()
        except OSError as err:
            return i, None, f"{path}: cannot read ({err.strerror or err}) during feature extraction"
        if actual != self.sha1s[i]:
            return (
                i,
                None,
                (
                    f"{path}: file changed since the data was read (sha1 {actual[:12]}, "
                    f"expected {self.sha1s[i][:12]}); run again to re-read the data"
                ),
            )
        try:
            img = load_rgb(path, draft=self.draft)
        except ImageDecodeError as err:
            return i, None, f"{err} (during feature extraction)"
        try:
            return i, self.transform(img), None
        except FidBenchError as err:
            return i, None, f"{path}: {err}"


def _collate(items: list[tuple[int, Any, str | None]]) -> tuple[np.ndarray, Any, list[str]]:
    index = np.array([i for i, _, _ in items], dtype=np.int64)
    errors = [e for _, _, e in items if e is not None]
    if errors:
        return index, None, errors
    values = [v for _, v, _ in items]
    if isinstance(values[0], np.ndarray):
        # numpy outputs of different shapes (e.g. tiles of differently sized images) stay a list
        same = all(v.shape == values[0].shape for v in values)
        return index, (np.stack(values) if same else values), errors
    import torch

    return index, torch.stack([torch.as_tensor(v) for v in values]), errors


def _extract(
    encoder: Any,
    paths: list[str],
    sha1s: list[str],
    cache: FeatureCache,
    *,
    batch_size: int,
    num_workers: int,
    chunk_rows: int,
    progress: bool | None,
) -> dict[str, float]:
    """Extract and cache ``paths``; returns the main process's time by ``PROFILE`` part."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    profile = dict.fromkeys(PROFILE, 0.0)
    t0 = time.perf_counter()
    # an encoder whose transform needs nothing loaded lets the workers start decoding while it loads
    early = bool(getattr(encoder, "transform_before_load", False)) and num_workers > 0
    if not early:
        encoder.load()
    loader = DataLoader(
        # an encoder that resizes down may let JPEGs decode at reduced scale (keyed in its identity)
        _Images(paths, sha1s, encoder.transform, getattr(encoder, "draft_size", None)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=encoder.device.startswith("cuda"),
        # workers decode and transform; two batches in flight each keep the encoder busy
        prefetch_factor=2 if num_workers > 0 else None,
        multiprocessing_context=_worker_context() if num_workers > 0 else None,
        worker_init_fn=signals.quiet_worker,  # Ctrl-C/SIGTERM to the group: one line, not tracebacks
    )
    batches = iter(loader)  # starts the workers (fork: before the session exists, so they never hold it)
    if early:
        encoder.load()
    _check_hub_revision(cache, encoder)
    cache.update_meta(encoder.describe())
    profile["load"] = time.perf_counter() - t0
    pending_keys: list[str] = []
    pending: list[np.ndarray] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        t = time.perf_counter()
        if pending:
            cache.put(pending_keys, np.concatenate(pending))
            pending_keys.clear()
            pending.clear()
        last_flush = time.monotonic()
        profile["write"] += time.perf_counter() - t

    # on the CPU the decode workers need cores too: intra-op threads competing with them for the
    # same cores spin-wait and can slow a forward pass several-fold
    threads = torch.get_num_threads()
    if not encoder.device.startswith("cuda") and num_workers > 0:
        torch.set_num_threads(max(1, min(threads, _cpu_count() - num_workers)))
    bar = tqdm(
        total=len(paths),
        unit="img",
        desc=f"features {encoder.name}",
        disable=not _show_progress(progress),
        leave=False,
        smoothing=0.1,
    )
    try:
        with torch.inference_mode():
            while True:
                t = time.perf_counter()
                item = next(batches, None)
                profile["wait"] += time.perf_counter() - t
                if item is None:
                    break
                index, batch, errors = item
                if errors:
                    more = f" (and {len(errors) - 1} more in this batch)" if len(errors) > 1 else ""
                    raise FidBenchError(errors[0] + more)
                t = time.perf_counter()
                feats = np.asarray(encoder.encode(batch), dtype=np.float32)
                profile["encode"] += time.perf_counter() - t
                if feats.ndim != 2 or feats.shape[0] != len(index):
                    raise FidBenchError(
                        f"{encoder.short}: encode() returned shape {list(feats.shape)} for a batch of {len(index)}"
                    )
                bad = ~np.isfinite(feats).all(axis=1)
                if bad.any():
                    raise FidBenchError(
                        f"{encoder.short} produced NaN or infinite features for {paths[index[np.flatnonzero(bad)[0]]]}"
                    )
                pending_keys.extend(sha1s[i] for i in index)
                pending.append(feats)
                bar.update(len(index))
                if len(pending_keys) >= chunk_rows or time.monotonic() - last_flush > CHUNK_SECONDS:
                    flush()
    finally:
        # whatever was extracted before a failure is valid: keep it
        flush()
        bar.close()
        torch.set_num_threads(threads)
    return profile


def _show_progress(progress: bool | None) -> bool:
    """The bar is drawn when asked, else only on a terminal and never under pytest (quiet logs)."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


def _check_hub_revision(cache: FeatureCache, encoder: Any) -> None:
    """Refuse to add features of one hub commit to a folder holding another commit's features.

    Hub weights are identified by model name and tag (computing the identity must not import
    torch, see ``encoders``), so the commit is only known once the network is loaded; the folder's
    meta.json records the commit its features came from. Mixing two commits in one folder would
    break the promise that features of different weights never mix.
    """
    before = ((cache.read_meta() or {}).get("encoder") or {}).get("weights") or {}
    now = encoder.describe().get("weights") or {}
    old, new = before.get("hf_hub_revision"), now.get("hf_hub_revision")
    if old and new and old != new:
        raise FidBenchError(
            f"features: {encoder.short} now loads hub commit {new[:12]} but {cache.dir} holds features "
            f"of commit {old[:12]}; delete that folder to re-extract with the new weights "
            "(features of different weights never mix)"
        )


def _worker_context() -> Any:
    """Start DataLoader workers with the standard library's own context, explicitly.

    Inside a Hydra joblib (loky) job the default context is loky's, which cannot start the
    DataLoader's worker processes. ``fork`` where there is one: workers inherit the prepared
    encoder instead of unpickling it.
    """
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
