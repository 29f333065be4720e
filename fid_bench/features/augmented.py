"""Train-time augmentation for the features track (``features.augment``): K altered copies of each
training image, each extracted once and cached like any features.

``features.augment.ops`` lists the alterations applied in order, each with the range its strength is
drawn from: ``{jpeg: [65, 95]}`` (re-encode at a quality in the range), ``{blur: [0, 2]}`` (Gaussian
blur, sigma in pixels; 0 = none), ``{resize: [0.5, 1.0]}`` (down-scale both sides by a factor; not
scaled back: the encoder's own preprocessing resizes, as it would a genuinely small image),
``{shortest: [24, 64]}`` (down-scale to a shortest side of that many pixels, whatever the image's own
size: a thumbnail; an image already that small is left as it is).
``copies`` is K and ``seed`` makes the draws repeatable.

``AugmentedEncoder`` wraps the run's encoder (already format-aligned, so an augmented image is then
aligned like every other): the strengths of copy ``k`` of an image are drawn from a generator seeded
by ``seed``, ``k`` and the image's pixels, so the same image always gets the same copy ``k`` and the
features are cached under an identity naming the ops, the seed and ``k``. Only the detector's
training rows are ever passed through it: validation, test, extra and predicted images never are.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.errors import FidBenchError
from fid_bench.features.encoders import AlteringEncoder, as_encoder

if TYPE_CHECKING:
    from PIL import Image

AUGMENTED_TARGET = "fid_bench.features.augmented.AugmentedEncoder"
OPS = ("jpeg", "blur", "resize", "shortest")
VERSION = 1


@dataclass(frozen=True)
class Augment:
    """Parsed ``features.augment``: the ops with their ranges, the number of copies and the seed."""

    ops: tuple[tuple[str, float, float], ...]
    copies: int
    seed: int

    def as_list(self) -> list[dict[str, list[float]]]:
        return [{name: [lo, hi]} for name, lo, hi in self.ops]


def parse_augment(node: Any) -> Augment | None:
    """``features.augment`` (``{ops: [...], copies: K, seed: S}``) checked; ``None`` when there are no ops."""
    if node is None:
        return None
    try:
        spec = dict(node)
    except (TypeError, ValueError):
        raise FidBenchError(
            f"features.augment must be a mapping like {{ops: [{{jpeg: [65, 95]}}], copies: 1}}, got {node!r}"
        ) from None
    unknown = sorted(set(spec) - {"ops", "copies", "seed"})
    if unknown:
        raise FidBenchError(f"features.augment: unknown key {unknown[0]!r} (allowed: ops, copies, seed)")
    ops_in = spec.get("ops") or []
    if not ops_in:
        return None
    ops = []
    for item in ops_in:
        try:
            ((name, bounds),) = dict(item).items()
        except (TypeError, ValueError):
            raise FidBenchError(
                f"features.augment.ops: each op is one mapping like {{jpeg: [65, 95]}}, got {item!r}"
            ) from None
        if name not in OPS:
            raise FidBenchError(f"features.augment.ops: unknown op {name!r}; choose from {', '.join(OPS)}")
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise FidBenchError(
                f"features.augment.ops: {name} needs a range [low, high] of two numbers, got {bounds!r}"
            ) from None
        valid = {
            "jpeg": 1 <= lo <= hi <= 100,
            "blur": 0 <= lo <= hi,
            "resize": 0 < lo <= hi <= 1,
            "shortest": 1 <= lo <= hi,
        }[name]
        if not valid:
            need = {
                "jpeg": "1 <= low <= high <= 100",
                "blur": "0 <= low <= high",
                "resize": "0 < low <= high <= 1",
                "shortest": "1 <= low <= high (pixels)",
            }
            raise FidBenchError(f"features.augment.ops: {name} range {[lo, hi]} must satisfy {need[name]}")
        ops.append((str(name), lo, hi))
    copies = spec.get("copies", 1)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise FidBenchError(f"features.augment.copies must be a whole number >= 1, got {copies!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FidBenchError(f"features.augment.seed must be a whole number, got {seed!r}")
    return Augment(tuple(ops), int(copies), int(seed))


def augment_image(img: Image.Image, ops: Any, rng: np.random.Generator) -> Image.Image:
    """``img`` altered by each op in turn, strengths drawn from ``rng``."""
    from PIL import Image as PILImage
    from PIL import ImageFilter

    for name, lo, hi in ops:
        value = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
        if name == "jpeg":
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=round(value), subsampling=2)
            buf.seek(0)
            img = PILImage.open(buf).convert("RGB")
        elif name == "blur" and value > 0:
            img = img.filter(ImageFilter.GaussianBlur(radius=value))
        elif name == "resize" and value < 1:
            size = (max(1, round(img.width * value)), max(1, round(img.height * value)))
            img = img.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=None)
        elif name == "shortest" and min(img.size) > round(value):
            scale = round(value) / min(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=None)
    return img


class AugmentedEncoder(AlteringEncoder):
    """``encoder`` applied to copy ``copy`` of each image altered by ``ops`` (see the module docstring)."""

    def __init__(self, encoder: Any, ops: Any, copy: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.inner = as_encoder(encoder)
        parsed = parse_augment({"ops": ops, "copies": 1, "seed": int(seed)})
        if parsed is None:
            raise ValueError("AugmentedEncoder needs at least one op")
        self.ops = parsed.ops
        self.copy = int(copy)
        self.seed = int(seed)

    @property
    def key(self) -> str:
        ops = json.dumps([[n, lo, hi] for n, lo, hi in self.ops], separators=(",", ":"))
        return f"augment:v{VERSION}:{ops}:seed{self.seed}:copy{self.copy}"

    @property
    def name(self) -> str:
        return f"{self.inner.name}+aug{self.copy}"

    def alter(self, img: Image.Image) -> Image.Image:
        # seeded by the pixels: the same image gets the same copy k in every run and worker
        digest = hashlib.sha1(f"{self.seed}:{self.copy}:{img.size}".encode() + img.tobytes()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return augment_image(img, self.ops, rng)

    def described(self) -> dict[str, Any]:
        return {"augment": self.key}


def augmented_config(encoder_cfg: dict[str, Any], augment: Augment, copy: int) -> dict[str, Any]:
    """The config of copy ``copy``'s encoder around ``encoder_cfg`` (a plain ``_target_`` mapping)."""
    return {
        "_target_": AUGMENTED_TARGET,
        "encoder": encoder_cfg,
        "ops": augment.as_list(),
        "copy": int(copy),
        "seed": augment.seed,
    }
