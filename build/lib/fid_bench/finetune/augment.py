"""Image preparation for the fine-tuning track.

Two stages, so the deterministic part can be decoded once and cached (``decoded.py``):

``square_uint8``  deterministic: decoded RGB image -> ``[S, S, 3]`` uint8 (shorter side resized to S,
                  centre crop; an image already S x S is left untouched, so no resampling blurs the
                  pixels a detector looks at). Training, evaluation and prediction all start here.
``Augment``       random, training only, applied on top of that array every epoch. Following Wang et
                  al. (CVPR 2020), Gaussian blur and JPEG re-compression come first, each with its own
                  probability, then a random crop (padding by reflection) and a horizontal flip.

Normalisation (``mean``/``std``) is applied on whole batches by the network wrapper, so workers move
uint8 tensors (4x less than float32) and test-time preprocessing is exactly ``square_uint8``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from fid_bench.errors import FidBenchError

#: bump when ``square_uint8`` could produce different pixels (invalidates decoded caches)
PREPARE_VERSION = 1


def square_uint8(img: Image.Image, size: int) -> np.ndarray:
    """The deterministic test-time preprocessing: RGB image -> ``[size, size, 3]`` uint8."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def _pair(value: Sequence[float] | float, name: str, low: float, high: float) -> tuple[float, float]:
    is_seq = isinstance(value, Sequence) and not isinstance(value, str)
    vals = [float(v) for v in value] if is_seq else [float(value)] * 2
    if len(vals) != 2 or not (low <= vals[0] <= vals[1] <= high):
        raise FidBenchError(f"augment.{name} must be [min, max] within [{low}, {high}], got {value!r}")
    return vals[0], vals[1]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation of a ``[S, S, 3]`` uint8 array (see the module docstring)."""

    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 3.0)
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)
    crop_pad: int = 0
    hflip_p: float = 0.5

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> Augment:
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise FidBenchError(
                f"augment: unknown option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        for key in ("blur_p", "jpeg_p", "hflip_p"):
            p = float(cfg.get(key, getattr(cls, key)))
            if not 0.0 <= p <= 1.0:
                raise FidBenchError(f"augment.{key} is a probability in [0, 1], got {p}")
            cfg[key] = p
        if "blur_sigma" in cfg:
            cfg["blur_sigma"] = _pair(cfg["blur_sigma"], "blur_sigma", 0.0, 50.0)
        if "jpeg_quality" in cfg:
            q = _pair(cfg["jpeg_quality"], "jpeg_quality", 1, 100)
            cfg["jpeg_quality"] = (int(q[0]), int(q[1]))
        crop_pad = int(cfg.get("crop_pad", 0))
        if crop_pad < 0:
            raise FidBenchError(f"augment.crop_pad must be >= 0, got {crop_pad}")
        cfg["crop_pad"] = crop_pad
        return cls(**cfg)

    @property
    def active(self) -> bool:
        return bool(self.blur_p or self.jpeg_p or self.crop_pad or self.hflip_p)

    def __call__(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.blur_p and rng.random() < self.blur_p:
            sigma = rng.uniform(*self.blur_sigma)
            arr = np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(radius=sigma)))
        if self.jpeg_p and rng.random() < self.jpeg_p:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            with Image.open(buf) as img:
                arr = np.asarray(img.convert("RGB"))
        if self.crop_pad:
            p = self.crop_pad
            h, w = arr.shape[:2]
            padded = np.pad(arr, ((p, p), (p, p), (0, 0)), mode="reflect")
            top, left = rng.integers(0, 2 * p + 1, size=2)
            arr = padded[top : top + h, left : left + w]
        if self.hflip_p and rng.random() < self.hflip_p:
            arr = arr[:, ::-1]
        return np.ascontiguousarray(arr)
