"""Test-time perturbations of held-out images, named by short strings (``jpeg75``, ``blur1``, ...).

Forms (the number is the perturbation's ``strength``):

* ``jpeg<Q>``     re-encode as JPEG at quality Q (1..100, Pillow/libjpeg tables, 4:2:0 chroma);
* ``blur<S>``     Gaussian blur with standard deviation S pixels (S > 0; Pillow's GaussianBlur);
* ``resize<F>``   down-scale both sides by F (0 < F <= 1, bicubic with antialiasing). The image
                  is *not* scaled back up: the model's own preprocessing resizes it to its input
                  size, exactly as it would a genuinely small image;
* ``crop<F>``     keep the centre F of the width and of the height (0 < F <= 1; area F^2);
* ``none``        the identity (a baseline row in a robustness table).

Every perturbation is deterministic: the same image in gives the same pixels out. Severity grows
with lower JPEG quality, larger sigma, smaller scale and smaller crop (``Perturbation.severity``).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from PIL import Image

FORMS = (
    "jpeg<quality 1-100> (jpeg75), blur<sigma px> (blur1.5), resize<scale 0-1> (resize0.5), "
    "crop<fraction 0-1> (crop0.8), none"
)
_NAME = re.compile(r"^(jpeg|blur|resize|crop)(\d+(?:\.\d+)?|\.\d+)$")


@dataclass(frozen=True)
class Perturbation:
    """One named perturbation; call it on a PIL image to get the perturbed image."""

    family: str
    strength: float

    @property
    def name(self) -> str:
        """Canonical name (``jpeg75``, ``resize0.5``): parsing it gives this perturbation back."""
        if self.family == "none":
            return "none"
        return f"{self.family}{self.strength:g}"

    @property
    def severity(self) -> float:
        """A number that grows with how much the perturbation destroys (0 = identity)."""
        return {
            "none": 0.0,
            "jpeg": (100.0 - self.strength) / 100.0,
            "blur": self.strength,
            "resize": 1.0 - self.strength,
            "crop": 1.0 - self.strength,
        }[self.family]

    def __call__(self, img: Image.Image) -> Image.Image:
        from PIL import Image, ImageFilter

        img = img.convert("RGB") if img.mode != "RGB" else img
        if self.family == "jpeg":
            return Image.open(io.BytesIO(self.encode(img))).convert("RGB")
        if self.family == "blur":
            return img.filter(ImageFilter.GaussianBlur(radius=self.strength))
        if self.family == "resize":
            size = (_scaled(img.width, self.strength), _scaled(img.height, self.strength))
            return img.resize(size, Image.Resampling.BICUBIC) if size != img.size else img.copy()
        if self.family == "crop":
            w, h = _scaled(img.width, self.strength), _scaled(img.height, self.strength)
            left, top = (img.width - w) // 2, (img.height - h) // 2
            return img.crop((left, top, left + w, top + h))
        return img.copy()

    def encode(self, img: Image.Image) -> bytes:
        """The perturbed image as file bytes: JPEG at the given quality for ``jpeg``, else lossless PNG."""
        buf = io.BytesIO()
        if self.family == "jpeg":
            img.convert("RGB").save(buf, "JPEG", quality=int(self.strength))
        else:
            self(img).save(buf, "PNG")
        return buf.getvalue()

    def save(self, img: Image.Image, stem: str | Path) -> Path:
        """Write the perturbed image next to ``stem`` (``.jpg`` for ``jpeg``, ``.png`` otherwise).

        A ``jpeg`` perturbation writes its own re-encoded bytes, so a model reading the file sees
        exactly one re-compression at the stated quality (saving ``self(img)`` as JPEG again would
        compress it twice).
        """
        path = Path(stem).with_suffix(".jpg" if self.family == "jpeg" else ".png")
        path.write_bytes(self.encode(img))
        return path


def _scaled(n: int, factor: float) -> int:
    return max(1, round(n * factor))


def parse_perturbation(name: str) -> Perturbation:
    """``jpeg75`` -> Perturbation("jpeg", 75.0); a bad name -> one-line FidBenchError listing the forms."""
    text = str(name).strip().lower()
    if text in ("none", "clean", "identity"):
        return Perturbation("none", 0.0)
    m = _NAME.match(text)
    if not m:
        raise FidBenchError(f"unknown perturbation {name!r}; valid forms: {FORMS}")
    family, value = m.group(1), float(m.group(2))
    if family == "jpeg" and not (value == int(value) and 1 <= value <= 100):
        raise FidBenchError(f"perturbation {name!r}: JPEG quality must be a whole number in 1..100")
    if family == "blur" and not (0 < value <= 100 and math.isfinite(value)):
        raise FidBenchError(f"perturbation {name!r}: blur sigma must be > 0 (pixels, at most 100)")
    if family in ("resize", "crop") and not 0 < value <= 1:
        raise FidBenchError(f"perturbation {name!r}: {family} fraction must be in (0, 1]")
    return Perturbation(family, value)


def parse_perturbations(names: str | list[str] | tuple[str, ...]) -> list[Perturbation]:
    """Several names, as a list or one comma-separated string; duplicates kept once, order kept."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[Perturbation] = []
    for item in items:
        if str(item).strip():
            p = parse_perturbation(item)
            if p not in out:
                out.append(p)
    return out
