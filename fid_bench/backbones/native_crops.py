"""Native-resolution scoring: windows of the encoder's input size cut from the original pixels.

``model.resize=native`` never scales an image down (resizing erases the traces generators leave in
the pixels): ``model.crops`` windows of the input size are cut from the decoded image, on an even
``grid`` over it or at ``random`` positions (seeded by ``model.crop_seed`` and the image's pixels,
so the same image always gets the same windows in every process), and the encoder averages their
features into the image's one row. An image smaller than a window in a dimension is first resized
up until the window fits (aspect kept): padding would add borders no real photo has, a cue a
detector could learn instead.

Both encoder paths use these functions -- the ONNX one (``fid_bench.features.onnx``) and the torch
one (``fid_bench.features.encoders.FrozenEncoder`` over a timm or open_clip backbone) -- so one set
of weights gives the same features either way.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from PIL import Image

CROP_MODES = ("grid", "random")


def crop_spec(crops: Any, crop_mode: Any, crop_seed: Any) -> dict[str, Any]:
    """``model.crops`` / ``crop_mode`` / ``crop_seed`` checked, as the dict the identity carries."""
    if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
        raise FidBenchError(f"model.crops must be a positive integer, got {crops!r}")
    if crop_mode not in CROP_MODES:
        raise FidBenchError(f"model.crop_mode must be grid or random, got {crop_mode!r}")
    try:
        seed = int(crop_seed)
    except (TypeError, ValueError):
        seed = None
    if seed is None or (isinstance(crop_seed, float) and seed != crop_seed):
        raise FidBenchError(f"model.crop_seed must be an integer, got {crop_seed!r}")
    return {"crops": crops, "crop_mode": str(crop_mode), "crop_seed": seed}


def _window(size: int | tuple[int, int]) -> tuple[int, int]:
    """A window's (width, height) from a side or a ``(height, width)`` pair (``Preprocessing.size``)."""
    if isinstance(size, (tuple, list)):
        return int(size[-1]), int(size[0])
    return int(size), int(size)


def crop_boxes(
    w: int, h: int, size: int | tuple[int, int], pp: dict[str, Any], img: Any = None
) -> list[tuple[int, int]]:
    """Top-left corners of the ``pp["crops"]`` windows of ``size`` (a side, or ``(height, width)``)
    in a ``w`` x ``h`` image that holds at least one window."""
    n = pp["crops"]
    cw, ch = _window(size)
    if pp["crop_mode"] == "random":
        # seeded by the pixels too: the same image gets the same crops in every process
        key = zlib.crc32(img.tobytes()) if img is not None else 0
        rng = np.random.default_rng([pp["crop_seed"], w, h, key])
        return [(int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))) for _ in range(n)]
    if n == 1:
        return [((w - cw) // 2, (h - ch) // 2)]
    k = math.ceil(math.sqrt(n))  # a k x k grid spanning the image, n of its points evenly by index
    xs = np.linspace(0, w - cw, k).round().astype(int)
    ys = np.linspace(0, h - ch, k).round().astype(int)
    grid = [(int(x), int(y)) for y in ys for x in xs]
    return [grid[i] for i in np.linspace(0, len(grid) - 1, n).round().astype(int)]


def native_windows(
    img: Image.Image, size: int | tuple[int, int], pp: dict[str, Any], interpolation: str = "bicubic"
) -> np.ndarray:
    """The ``pp["crops"]`` windows of ``img``: ``uint8 [crops, height, width, 3]``, original pixels.

    An image smaller than a window in a dimension is resized up first (``interpolation``, aspect
    kept) until the window fits; nothing else is ever resampled."""
    from PIL import Image as PILImage

    cw, ch = _window(size)
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    scale = max(cw / w, ch / h)
    if scale > 1:  # too small for one window: up until it fits, aspect kept
        resample = getattr(PILImage.Resampling, str(interpolation).upper(), PILImage.Resampling.BICUBIC)
        w, h = max(cw, math.ceil(w * scale)), max(ch, math.ceil(h * scale))
        img = img.resize((w, h), resample)
    arr = np.asarray(img, dtype=np.uint8)
    return np.stack([arr[y : y + ch, x : x + cw] for x, y in crop_boxes(w, h, (ch, cw), pp, img)])
