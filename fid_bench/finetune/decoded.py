"""Decode-once image store: every image decoded and prepared (``square_uint8``) a single time.

On a small data set, decoding JPEGs dominates an epoch of a small network. ``decode_images`` turns
a list of files into one ``[N, S, S, 3]`` uint8 array (plus a readable mask), either in memory or as
an ``np.memmap`` under the cache folder, and augmentations run on top of it every epoch.

A memmap is keyed by the content hashes of its images, their order and the preparation (size,
``PREPARE_VERSION``, decoder version), so a later job on the same data reuses it; it is written to a
temporary name and renamed when complete, so two jobs building it at once never read half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fid_bench.data.decode import DECODER_VERSION, load_rgb, parse_alignment
from fid_bench.errors import FidBenchError
from fid_bench.finetune.augment import PREPARE_VERSION, square_uint8
from fid_bench.finetune.threads import init_loader_worker

log = logging.getLogger(__name__)

MODES = ("auto", "memory", "memmap", "off")


@dataclass
class DecodedImages:
    """Prepared pixels of a list of images; ``ok[i]`` is False where image ``i`` could not be read."""

    pixels: np.ndarray  # [N, S, S, 3] uint8 (ndarray or memmap)
    ok: np.ndarray  # [N] bool
    mode: str  # "memory" | "memmap"
    seconds: float  # time spent decoding (0 when a memmap was reused)
    reused: bool = False

    def __len__(self) -> int:
        return len(self.ok)


def prepare_file(path: str, size: int, align: dict | None = None) -> np.ndarray | None:
    """Decode ``path`` (format-aligned by ``align``, ``data.align``) and prepare it; None when it
    cannot be read (counted by the caller)."""
    try:
        return square_uint8(load_rgb(path, align), size)
    except (FidBenchError, OSError) as err:
        log.warning("unreadable image %s: %s", path, err)
        return None


def choose_mode(mode: str, n_images: int, size: int, max_memory_gb: float) -> str:
    """Resolve ``auto``: in memory when the prepared pixels fit in ``max_memory_gb``, else a memmap."""
    if mode not in MODES:
        raise FidBenchError(f"classifier.decoded_cache must be one of {list(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    nbytes = n_images * size * size * 3
    return "memory" if nbytes <= max_memory_gb * 2**30 else "memmap"


def cache_key(sha1s: Sequence[str], size: int, align: dict | None = None) -> str:

    alignment = parse_alignment(align)
    aligned = f":{alignment.key}" if alignment is not None else ""
    h = hashlib.sha1(
        f"decoded:v{PREPARE_VERSION}:dec{DECODER_VERSION}:size{size}{aligned}:n{len(sha1s)}\n".encode()
    )
    for s in sha1s:
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()


def decode_images(
    paths: Sequence[str],
    sha1s: Sequence[str],
    size: int,
    *,
    mode: str,
    cache_dir: Path | None = None,
    num_workers: int = 0,
    align: dict | None = None,
) -> DecodedImages:
    """Decode and prepare every image once (``mode`` is ``memory`` or ``memmap``)."""
    if mode not in ("memory", "memmap"):
        raise ValueError(f"decode_images needs a resolved mode, got {mode!r}")
    if len(paths) != len(sha1s):
        raise ValueError("paths and sha1s must be aligned")
    n = len(paths)
    if mode == "memmap":
        if cache_dir is None:
            raise FidBenchError("decoded_cache=memmap needs a cache folder (features.cache_dir)")
        folder = Path(cache_dir) / "decoded"
        folder.mkdir(parents=True, exist_ok=True)
        key = cache_key(sha1s, size, align)
        data_path, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
        if meta_path.exists() and data_path.exists():
            meta = json.loads(meta_path.read_text())
            pixels = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
            return DecodedImages(pixels, np.asarray(meta["ok"], dtype=bool), "memmap", 0.0, reused=True)
        tmp_path = folder / f"{key}.{os.getpid()}.tmp"
        pixels = np.memmap(tmp_path, dtype=np.uint8, mode="w+", shape=(max(n, 1), size, size, 3))[:n]
    else:
        pixels = np.empty((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    t0 = time.perf_counter()
    # a bar on a terminal only (quiet in logs and tests): decoding a large set takes minutes
    bar = tqdm(total=n, unit="img", desc=f"decode {size}px", disable=not sys.stderr.isatty(), leave=False)
    try:
        with bar:
            for start, batch in _prepared_batches(paths, size, num_workers, align):
                for j, arr in enumerate(batch):
                    if arr is not None:
                        pixels[start + j] = arr
                        ok[start + j] = True
                    else:
                        pixels[start + j] = 0
                bar.update(len(batch))
        seconds = time.perf_counter() - t0
        if mode == "memmap":
            pixels.flush()
            del pixels
            os.replace(tmp_path, data_path)
            tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
            try:
                tmp_meta.write_text(json.dumps({"size": size, "n": n, "ok": ok.tolist()}))
                os.replace(tmp_meta, meta_path)
            finally:
                with contextlib.suppress(OSError):
                    tmp_meta.unlink(missing_ok=True)
            pixels = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    finally:
        if mode == "memmap":
            with contextlib.suppress(OSError):  # a full disk or an interrupt leaves no partial file
                tmp_path.unlink(missing_ok=True)
    log.info("decoded %d images at %d px in %.1f s (%s)", n, size, seconds, mode)
    return DecodedImages(pixels, ok, mode, seconds)


class _PreparedFiles:
    """Map-style dataset of prepared images (module level, so worker processes can pickle it)."""

    def __init__(self, paths: Sequence[str], size: int, align: dict | None = None) -> None:
        self.paths, self.size, self.align = list(paths), size, align

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray | None:
        return prepare_file(self.paths[i], self.size, self.align)


def _prepared_batches(paths: Sequence[str], size: int, num_workers: int, align: dict | None = None):
    """Yield ``(start, [array | None, ...])`` in order, decoding in DataLoader worker processes."""
    from torch.utils.data import DataLoader

    chunk = 256
    loader = DataLoader(
        _PreparedFiles(paths, size, align),
        batch_size=chunk,
        num_workers=num_workers,
        collate_fn=list,
        worker_init_fn=init_loader_worker,
    )
    for b, batch in enumerate(loader):
        yield b * chunk, batch
