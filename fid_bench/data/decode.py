"""Robust image decoding: any file Pillow can open becomes one plain RGB image, or a one-line error.

``load_rgb`` is the only way images are read (readers, encoders, fine-tuning), so every track sees
the same pixels for the same file:

* first frame of an animation (GIF, APNG, WebP, multi-page TIFF);
* EXIF orientation applied;
* transparency (RGBA, LA, PA, P or L/RGB with a ``transparency`` entry) composited on a fixed
  white background (``BACKGROUND``), so a transparent PNG looks the same in every run;
* 16-bit images (``I;16*``) scaled to 8 bit by ``v * 255 / 65535`` (not clipped);
  32-bit ``I`` images are read as 8-bit when every value is in 0..255, as 16-bit when in 0..65535,
  and min-max stretched otherwise; float ``F`` images as 0..1 when every value is in [0, 1], as
  0..255 when in [0, 255], and min-max stretched otherwise (these modes carry no fixed scale);
* CMYK, YCbCr and the other colour modes through Pillow's own conversion.

Pillow's decompression-bomb guard stays on and truncated files are rejected
(``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set): both become an ``ImageDecodeError``. Pillow
refuses only above about 179 million pixels (a 13000x13000 1-bit PNG of 21 KB still decodes), so
our own, lower limits apply first, from the header alone, before a single pixel is decoded:

* ``too_large``: more than ``max_pixels()`` pixels, or more memory to decode than an 8-bit RGB
  image of ``max_pixels()`` pixels takes (``decode_bytes``: the mode's bytes per pixel through
  every step to RGB, measured; a 16-bit or transparent image costs two to four times as much);
* ``truncated``: a file too small to hold the pixels its header announces -- a PNG under the
  pixel data divided by deflate's largest ratio, a Huffman-coded JPEG under one bit per 8x8 block
  (``plausible_minimum_bytes``). Such a JPEG would otherwise "decode" whole, padded with grey.

**Format alignment** (``data.align``, ``Alignment``): ``load_rgb(path, align)`` re-encodes the
decoded image in memory -- optionally resized to ``size`` x ``size`` first (bicubic), then saved as
``format`` (``jpeg``/``webp`` at ``quality``, or lossless ``png``) and decoded again -- so every
image of every class carries the same last compression before an encoder or network sees it,
and a JPEG-versus-PNG or quality difference between the classes cannot decide a score. Both
tracks, prediction and the extra data sets decode through here with the run's alignment; its
``key`` enters every cache key of what is computed from the pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from fid_bench.errors import FidBenchError, one_line

#: colour transparent pixels are composited on (documented, fixed: white)
BACKGROUND = (255, 255, 255)

#: bump when the decoded pixels for a given file could change (invalidates validation caches)
DECODER_VERSION = 1

# skip / error reasons produced here (readers add their own, see readers.py)
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
TOO_LARGE = "too_large"

#: default pixel limit (``data.max_pixels``): room for 36 MP camera photos and 8K frames (33 MP),
#: a quarter of Pillow's refusal point; every decode thread and loader worker holds one such image
DEFAULT_MAX_PIXELS = 40_000_000
#: the limit in force; an environment variable so DataLoader and DDP worker processes share it
MAX_PIXELS_ENV = "FID_BENCH_MAX_PIXELS"


#: peak bytes per pixel of ``load_rgb`` by the mode Pillow opens (the stored image plus every
#: conversion to RGB alive at once; Pillow keeps RGB and 2-channel modes in 4 bytes), measured with
#: ru_maxrss on 9-megapixel files (docs/ADVERSARIAL.md); a mode not listed converts like RGB
_DECODE_BYTES = {"1": 6, "L": 6, "P": 6, "RGB": 9, "I;16": 11, "I": 29, "F": 37}
_DECODE_BYTES_ALPHA = 21  # RGBA, LA, PA, and any mode with a transparency entry: composited on white
#: the smallest deflate stream for ``n`` raw bytes is about ``n / 1032`` (258-byte matches in 2 bits)
DEFLATE_MAX_RATIO = 1032
#: JPEG start-of-frame markers of arithmetic coding (no one-bit-per-block floor)
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: PNG bits per pixel at the least, by the mode Pillow opens it in (palettes may use 1 bit)
_PNG_MIN_BITS = {"1": 1, "P": 1, "L": 1, "LA": 16, "RGB": 24, "RGBA": 32, "I;16": 16, "I;16B": 16, "I": 16}


def decode_bytes(width: int, height: int, mode: str, transparent: bool = False) -> int:
    """Peak memory (bytes) ``load_rgb`` needs for an image of this header."""
    if transparent or mode in _ALPHA_MODES:
        per_pixel = _DECODE_BYTES_ALPHA
    elif mode.startswith("I;16"):
        per_pixel = _DECODE_BYTES["I;16"]
    else:
        per_pixel = _DECODE_BYTES.get(mode, _DECODE_BYTES["RGB"])
    return width * height * per_pixel


def decode_budget(limit: int) -> int:
    """The bytes a decode may take: what an 8-bit RGB image of ``limit`` pixels takes."""
    return limit * _DECODE_BYTES["RGB"]


def plausible_minimum_bytes(fmt: str, width: int, height: int, mode: str, data: bytes | None = None) -> int:
    """The fewest bytes a complete file of this header can have (0 when no floor is known).

    PNG: the filtered rows (one filter byte per row, ``_PNG_MIN_BITS`` per pixel) compress at most
    ``DEFLATE_MAX_RATIO`` to 1. JPEG with Huffman coding: every 8x8 block of the full-resolution
    component codes its DC coefficient in at least one bit. ``data`` (the file's first bytes) tells
    a JPEG's coding apart; arithmetic coding has no such floor.
    """
    if fmt == "PNG":
        bits = _PNG_MIN_BITS.get(mode, 1)
        return height * (1 + (width * bits + 7) // 8) // DEFLATE_MAX_RATIO
    if fmt == "JPEG" and data is not None and _jpeg_sof(data) not in _ARITHMETIC_SOF:
        return ((width + 7) // 8) * ((height + 7) // 8) // 8
    return 0


def _jpeg_sof(data: bytes) -> int | None:
    """The start-of-frame marker's second byte (0xC0 baseline, 0xC2 progressive, ...), by walking the
    segments from the start; None when not found in ``data``."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def max_pixels() -> int:
    """The pixel limit in force (``set_max_pixels``, else ``$FID_BENCH_MAX_PIXELS``, else the default)."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return int(float(value)) if value.strip() else DEFAULT_MAX_PIXELS
    except ValueError:
        raise FidBenchError(f"{MAX_PIXELS_ENV}={value!r} is not a number of pixels") from None


def set_max_pixels(limit: int | float | None) -> None:
    """Set the pixel limit for this process and the worker processes it starts (None: the default)."""
    if limit is None:
        os.environ.pop(MAX_PIXELS_ENV, None)
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 1:
        raise FidBenchError(f"data.max_pixels must be a positive number of pixels, got {limit!r}")
    os.environ[MAX_PIXELS_ENV] = str(int(limit))


# EXIF orientation tag value -> the transpose that undoes it
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageDecodeError(FidBenchError):
    """A file that is not a usable image; ``reason`` is a short code (e.g. ``"truncated"``)."""

    def __init__(self, message: str, reason: str = UNDECODABLE) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What a successful validation learned about a file."""

    sha1: str
    width: int
    height: int
    format: str


#: bump when aligned pixels could change for the same alignment (invalidates caches keyed on it)
ALIGN_VERSION = 1
ALIGN_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


@dataclass(frozen=True)
class Alignment:
    """One re-encoding applied to every image (see the module docstring)."""

    format: str = "jpeg"
    quality: int | None = 96
    size: int | None = None

    def __post_init__(self) -> None:
        if self.format not in ALIGN_FORMATS:
            raise FidBenchError(
                f"data.align.format must be one of {sorted(ALIGN_FORMATS)}, got {self.format!r}"
            )
        lossy = self.format in ("jpeg", "webp")
        if lossy and not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise FidBenchError(
                f"data.align.quality must be an integer in 1..100 for {self.format}, got {self.quality!r}"
            )
        if not lossy and self.quality is not None:
            raise FidBenchError(f"data.align.quality must be null for the lossless {self.format} format")
        if self.size is not None and not (isinstance(self.size, int) and self.size >= 8):
            raise FidBenchError(f"data.align.size must be null or an integer >= 8, got {self.size!r}")

    @property
    def key(self) -> str:
        """What cache keys record: the alignment, its version and the Pillow that encodes it."""
        from importlib.metadata import version

        return f"align:v{ALIGN_VERSION}:{self.format}:q{self.quality}:s{self.size}:pillow{version('pillow')}"

    def as_dict(self) -> dict[str, object]:
        return {"format": self.format, "quality": self.quality, "size": self.size}

    def apply(self, img: Image.Image) -> Image.Image:
        """``img`` (RGB) resized when asked, re-encoded in memory and decoded again."""
        if self.size is not None and img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        options: dict[str, object] = {}
        if self.format == "jpeg":
            # fixed 4:2:0 chroma subsampling and standard tables: the same encoder settings for every image
            options = {"quality": self.quality, "subsampling": 2}
        elif self.format == "webp":
            options = {"quality": self.quality, "method": 4}
        img.save(buf, ALIGN_FORMATS[self.format], **options)
        buf.seek(0)
        return _decode(buf, f"<aligned {self.format}>")[0]


def parse_alignment(node: object) -> Alignment | None:
    """``data.align`` as an ``Alignment``; ``None`` (or an empty mapping) means no alignment.

    Accepts a mapping with ``format``, ``quality``, ``size`` (missing keys take the defaults:
    jpeg, 96, null) or an ``Alignment``; anything else is one clear error.
    """
    if node is None or isinstance(node, Alignment):
        return node
    try:
        items = dict(node)  # DictConfig and plain dicts alike
    except (TypeError, ValueError):
        raise FidBenchError(
            f"data.align must be null or a mapping like {{format: jpeg, quality: 96, size: null}}, got {node!r}"
        ) from None
    if not items:
        return None
    unknown = sorted(set(items) - {"format", "quality", "size"})
    if unknown:
        raise FidBenchError(f"data.align: unknown key(s) {unknown}; expected format, quality, size")
    fmt = str(items.get("format", "jpeg")).lower().replace("jpg", "jpeg")
    default_quality = 96 if fmt in ("jpeg", "webp") else None
    return Alignment(format=fmt, quality=items.get("quality", default_quality), size=items.get("size"))


def load_rgb(
    path: str | Path, align: Alignment | dict | None = None, draft: tuple[int, int] | None = None
) -> Image.Image:
    """Decode ``path`` into an RGB image (see the module docstring for the exact rules), then apply
    the format alignment when one is given.

    ``draft=(w, h)``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (Pillow's ``draft``: the
    largest reduction that keeps both sides at least ``w`` and ``h``), for a caller that resizes
    down to about that size anyway; other formats ignore it. The pixels differ slightly from a full
    decode, so a caller that caches what it computes keys it (``model.draft``)."""
    path = Path(path)
    with _file_errors(path), open(path, "rb") as fp:
        img = _decode(fp, str(path), draft)[0]
    alignment = parse_alignment(align)
    return alignment.apply(img) if alignment is not None else img


@contextlib.contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    """Opening a file fails in one of a few ways; each becomes a one-line ImageDecodeError."""
    try:
        yield
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found", MISSING_FILE) from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{path}: is a directory, not an image file", UNDECODABLE) from None
    except PermissionError:
        raise ImageDecodeError(f"{path}: permission denied", UNDECODABLE) from None


def check_image(path: str | Path) -> ImageInfo:
    """Validate and hash a file: sha1 of its bytes plus a full decode through ``load_rgb``'s path.

    Reads the file once; raises ``ImageDecodeError`` when ``load_rgb`` would fail on it.
    """
    path = Path(path)
    with _file_errors(path):
        data = path.read_bytes()
    if not data:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)", EMPTY_FILE)
    sha1 = hashlib.sha1(data).hexdigest()
    img, fmt = _decode(io.BytesIO(data), str(path))
    return ImageInfo(sha1=sha1, width=img.width, height=img.height, format=fmt)


def _decode(fp: BinaryIO, name: str, draft: tuple[int, int] | None = None) -> tuple[Image.Image, str]:
    """Decode an open binary stream; every failure becomes a one-line ``ImageDecodeError``."""
    try:
        with Image.open(fp) as img:
            fmt = img.format or ""
            width, height = img.size  # from the header: nothing decoded yet
            _check_header(img, fp)
            if draft is not None and fmt == "JPEG":
                img.draft(img.mode, draft)  # a no-op unless a power-of-two reduction fits
            img.load()  # full decode now: truncated or corrupt data fails here, not later
            orientation = _orientation(img)
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{name}: too many pixels ({err})", TOO_LARGE) from None
    except UnidentifiedImageError:
        if _is_empty(fp):
            raise ImageDecodeError(f"{name}: empty file (0 bytes)", EMPTY_FILE) from None
        raise ImageDecodeError(f"{name}: not a recognised image format", UNDECODABLE) from None
    except ImageDecodeError as err:
        raise ImageDecodeError(f"{name}: {err}", err.reason) from None
    except Exception as err:  # noqa: BLE001 - image plugins raise many types on corrupt input
        detail = one_line(err)
        reason = TRUNCATED if "truncat" in detail.lower() else UNDECODABLE
        raise ImageDecodeError(f"{name}: {reason} ({detail})", reason) from None
    if orientation in _ORIENTATION:
        rgb = rgb.transpose(_ORIENTATION[orientation])
    return rgb, fmt


def _check_header(img: Image.Image, fp: BinaryIO) -> None:
    """Refuse before decoding: too many pixels, too much memory, or too few bytes for the header."""
    width, height = img.size
    limit = max_pixels()
    if width * height > limit:
        raise ImageDecodeError(
            f"{width}x{height} = {width * height} pixels, above data.max_pixels={limit}", TOO_LARGE
        )
    need, budget = decode_bytes(width, height, img.mode, "transparency" in img.info), decode_budget(limit)
    if need > budget:
        raise ImageDecodeError(
            f"{width}x{height} {img.mode} image needs about {need / 1e9:.2f} GB to decode, above the "
            f"{budget / 1e9:.2f} GB of an 8-bit RGB image of data.max_pixels={limit} pixels",
            TOO_LARGE,
        )
    position = fp.tell()  # where the image plugin left the stream: put back for the decode
    size = fp.seek(0, io.SEEK_END)
    head = b""
    if img.format == "JPEG":
        fp.seek(0)
        head = fp.read(1 << 20)  # the segments before the frame header (EXIF, ICC, ...) fit in this
    fp.seek(position)
    floor = plausible_minimum_bytes(img.format or "", width, height, img.mode, head)
    if size < floor:
        raise ImageDecodeError(
            f"truncated: {size} bytes cannot hold the {width}x{height} {img.format} image its header "
            f"announces (at least {floor} bytes)",
            TRUNCATED,
        )


def _is_empty(fp: BinaryIO) -> bool:
    fp.seek(0, io.SEEK_END)
    return fp.tell() == 0


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        # an unreadable EXIF block does not make the pixels unusable: keep them as stored
        return 1


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I;16"):
        # round(v * 255 / 65535) = round(v / 257) = (v + 128) // 257 exactly (no ties), in integers:
        # a third of the memory of the float computation, the same pixels
        wide = np.asarray(img).astype(np.uint32)
        wide += 128
        wide //= 257
        return Image.fromarray(wide.astype(np.uint8)).convert("RGB")
    if mode == "I":
        return _gray_to_rgb(_rescale(np.asarray(img).astype(np.float64), (255.0, 65535.0)))
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if not np.isfinite(arr).all():
            raise ImageDecodeError("float image with NaN or infinite pixels", UNDECODABLE)
        if arr.min() >= 0.0 and arr.max() <= 1.0:
            return _gray_to_rgb(arr * 255.0)
        return _gray_to_rgb(_rescale(arr, (255.0,)))
    has_alpha = (
        mode in _ALPHA_MODES
        or "transparency" in img.info
        or (mode == "P" and img.palette is not None and img.palette.mode == "RGBA")
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img.copy()
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ImageDecodeError(f"unsupported image mode {mode!r} ({err})", UNDECODABLE) from None


def _rescale(arr: np.ndarray, ranges: tuple[float, ...]) -> np.ndarray:
    """Map ``arr`` to 0..255: by the first of ``ranges`` (0..r) that holds every value, else min-max."""
    lo, hi = float(arr.min()), float(arr.max())
    for r in ranges:
        if lo >= 0.0 and hi <= r:
            return arr * (255.0 / r)
    if hi == lo:
        return np.zeros_like(arr)
    return (arr - lo) * (255.0 / (hi - lo))


def _gray_to_rgb(arr: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
