"""Offline demo data: small synthetic "real" and "generated" images, made deterministically on first use.

This is a demo for trying the harness without downloads, not a benchmark. Both classes come from the
same random scene generator (1/f colour noise plus soft shapes) rendered at a lower resolution and
brought up to ``size`` by stride-2 up-sampling steps, the way a decoder network builds an image:

* "real" images use a balanced up-sampling kernel (plain bilinear), whose response vanishes at the
  Nyquist frequency, plus fine random (non-periodic) detail;
* "generated" images come from one of two generators: a transposed convolution whose even and odd
  output pixels get slightly different gains (``1 -+ delta / 2``), the classic checkerboard
  artefact with spectral peaks at the Nyquist frequency (one 2x step, group ``upsample_x2``) or at
  a quarter and half of the sampling rate (two steps, group ``upsample_x4``), which also
  over-sharpens (more fine detail than a photo); or an over-smoothing one (group
  ``upsample_smooth``) that leaves no checkerboard but less fine detail than a photo.

``difficulty`` sets how faint this is (``DIFFICULTIES``). ``hard``, the default, puts the generated
images on both sides of the real ones in high-frequency energy with a faint checkerboard: trees on
the frequency features find them (ROC-AUC about 0.75-0.8 on the demo grid), a linear model only half
does (about 0.63), so the grid and a search teach something. ``easy`` (checkerboard only, stronger)
is near-perfectly separable, for tests of the machinery. Both classes share everything else: scene
statistics, the mix of one or two up-sampling steps, the distribution of per-channel mean and
contrast (each image is normalised to randomly drawn targets), sensor noise, size and format
(lossless PNG). Mean colour, contrast, size, format and file size do not separate them.

On request (``confound="format"``) the real images are stored as JPEG (quality ``CONFOUND_QUALITY``)
and the generated ones stay PNG: a data set with a built-in format shortcut, as many public ones
have, to show what ``data.align`` changes; ``"format_reversed"`` stores the generated images as
JPEG instead, the same shortcut pointing the other way.

Layout (Kaggle-like, read by ``readers.DemoReader``)::

    root/train.csv      id,target,group   labelled rows (split "train"; make_folds draws val/test)
    root/test.csv       id                unlabelled rows (split "predict") to try submissions on
    root/solution.csv   id,target         the truth for test.csv, for checking a demo submission
    root/images/<id>.png                  ids carry no extension, as in the Kaggle data set
    root/manifest.json  generator parameters; a change regenerates the set

The set is generated in a temporary sibling folder and renamed into place under a file lock, so jobs
starting together never see half a set.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

#: bump whenever the generated images change for the same parameters
GENERATOR_VERSION = 5
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Difficulty:
    """How deep the generated images' trace is buried (every range is uniform, drawn per image)."""

    delta: tuple[float, float]  # strength of the checkerboard gain imbalance of a generated image
    noise: tuple[float, float]  # sensor noise (std, in 8-bit levels), the same for both classes
    # fine random detail added to every image, relative to the scene's std: it varies the
    # high-frequency energy from image to image, so only the energy at the artefact's own frequencies
    # relative to their neighbours tells the classes apart (a linear contrast trees find hard)
    detail: tuple[float, float]
    # share of generated images from an over-smoothing generator (group ``upsample_smooth``): no
    # checkerboard, but less fine detail than a real image; generated images then sit on both sides
    # of the real ones in high-frequency energy, which a linear model cannot follow and trees can
    smooth: float = 0.0
    # the checkerboard generator's fine detail relative to a real image's (1: the same)
    sharpen: float = 1.0


#: ``hard`` (the default) leaves room between detectors: the demo grid's ROC-AUCs spread over more
#: than 0.1 and no search trial reaches 1.0; ``easy`` is near-perfectly separable by the spectrum
#: features, for tests of the machinery that need a clear signal on a few dozen images
DIFFICULTIES = {
    "easy": Difficulty(delta=(0.008, 0.035), noise=(1.0, 3.0), detail=(0.0, 0.0)),
    "hard": Difficulty(delta=(0.001, 0.006), noise=(1.0, 3.0), detail=(0.03, 0.12), smooth=0.5, sharpen=1.7),
}
# per-image normalisation targets, drawn from the same range for both classes
_MEAN = (0.3, 0.7)
_CONTRAST = (0.10, 0.20)
# std of the fine detail added to a real image, relative to the artefact's (0.5 evens out PNG sizes)
_MATCH = 0.5


#: values of ``confound``: which class is stored as JPEG
CONFOUNDS = {"format": 0, "format_reversed": 1}
CONFOUND_QUALITY = 90


def demo_manifest(
    *,
    n_real: int,
    n_fake: int,
    n_predict: int,
    size: int,
    seed: int,
    confound: str | None = None,
    difficulty: str = "hard",
) -> dict:
    extra = {"confound": confound, "confound_quality": CONFOUND_QUALITY} if confound else {}
    return {
        **extra,
        "difficulty": difficulty,
        "generator": "fid_bench.data.demo",
        "version": GENERATOR_VERSION,
        "n_real": int(n_real),
        "n_fake": int(n_fake),
        "n_predict": int(n_predict),
        "size": int(size),
        "seed": int(seed),
        "format": "png",
    }


def ensure_demo(
    root: str | Path,
    *,
    n_real: int = 300,
    n_fake: int = 100,
    n_predict: int = 20,
    size: int = 64,
    seed: int = 0,
    confound: str | None = None,
    difficulty: str = "hard",
) -> Path:
    """Make sure ``root`` holds the demo set for these parameters; generate it if not. Returns ``root``."""
    if n_real < 1 or n_fake < 1 or n_predict < 0:
        raise FidBenchError(
            f"demo data needs n_real >= 1, n_fake >= 1 and n_predict >= 0 (got {n_real}, {n_fake}, {n_predict})"
        )
    if size < 16 or size % 4:
        raise FidBenchError(f"demo image size must be a multiple of 4 and at least 16, got {size}")
    if confound is not None and confound not in CONFOUNDS:
        raise FidBenchError(f"demo confound must be null or one of {sorted(CONFOUNDS)}, got {confound!r}")
    if difficulty not in DIFFICULTIES:
        raise FidBenchError(f"demo difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    root = Path(root).expanduser().absolute()
    manifest = demo_manifest(
        n_real=n_real, n_fake=n_fake, n_predict=n_predict, size=size, seed=seed, confound=confound,
        difficulty=difficulty,
    )  # fmt: skip
    if _read_manifest(root) == manifest:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):  # one generator at a time
        if _read_manifest(root) == manifest:  # another job made it while we waited
            return root
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        try:
            _generate(tmp, manifest)
            if root.exists():
                # stale parameters: move the old set aside first, so ``root`` is never half-written
                old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(root, old)
                os.rename(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "generated demo data (%d real, %d generated, %d unlabelled, %dpx) in %s in %.1f s",
            n_real,
            n_fake,
            n_predict,
            size,
            root,
            time.perf_counter() - start,
        )
    return root


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _generate(out: Path, manifest: dict) -> None:
    from PIL import Image

    n_real, n_fake, n_predict = manifest["n_real"], manifest["n_fake"], manifest["n_predict"]
    size, seed = manifest["size"], manifest["seed"]
    n_labelled = n_real + n_fake
    order = np.random.default_rng([seed, 0]).permutation(n_labelled + n_predict)
    labels = np.zeros(n_labelled + n_predict, dtype=int)
    labels[n_real:n_labelled] = 1
    # unlabelled rows keep the training prior
    labels[n_labelled:] = np.random.default_rng([seed, 1]).random(n_predict) < n_fake / n_labelled
    images = out / "images"
    images.mkdir()
    width = len(str(n_labelled + n_predict - 1))
    jpeg_label = CONFOUNDS.get(manifest.get("confound") or "", -1)
    difficulty = DIFFICULTIES[manifest.get("difficulty", "hard")]
    rows = []
    for k in range(n_labelled + n_predict):
        image_id = f"demo_{order[k]:0{width}d}"  # ids are shuffled so they say nothing of the label
        pixels, group = render_image(
            np.random.default_rng([seed, 2, k]), size, fake=bool(labels[k]), difficulty=difficulty
        )
        if labels[k] == jpeg_label:
            Image.fromarray(pixels).save(images / f"{image_id}.jpg", format="JPEG", quality=CONFOUND_QUALITY)
        else:
            Image.fromarray(pixels).save(images / f"{image_id}.png", format="PNG")
        rows.append((image_id, int(labels[k]), group, k >= n_labelled))
    train = sorted((r for r in rows if not r[3]), key=lambda r: r[0])
    test = sorted((r for r in rows if r[3]), key=lambda r: r[0])
    (out / "train.csv").write_text("id,target,group\n" + "".join(f"{i},{y},{g}\n" for i, y, g, _ in train))
    (out / "test.csv").write_text("id\n" + "".join(f"{i}\n" for i, *_ in test))
    (out / "solution.csv").write_text("id,target\n" + "".join(f"{i},{y}\n" for i, y, *_ in test))
    (out / "README.txt").write_text(
        "fid_bench demo data: synthetic images generated offline by fid_bench.data.demo.\n"
        "A demo for trying the harness, not a benchmark. Regenerated when manifest.json changes.\n"
    )
    # written last: a folder with a manifest is complete
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def render_image(
    rng: np.random.Generator, size: int, *, fake: bool, difficulty: Difficulty | None = None
) -> tuple[np.ndarray, str]:
    """One demo image as uint8 [size, size, 3] and its group ("" for real, the generator otherwise)."""
    level = difficulty or DIFFICULTIES["hard"]
    steps = 1 if rng.random() < 0.5 else 2
    scene = _scene(rng, size >> steps)
    deltas = [rng.uniform(*level.delta) * rng.choice([-1.0, 1.0]) for _ in range(steps)]
    balanced, unbalanced = scene, scene
    for delta in deltas:
        balanced, unbalanced = _upsample2(balanced, 0.0), _upsample2(unbalanced, delta)
    artefact = (unbalanced - balanced).std()
    detail = rng.uniform(*level.detail) * balanced.std()
    smooth = fake and rng.random() < level.smooth
    if smooth:
        img, group = balanced, "upsample_smooth"  # the fine detail of a real photo is missing
    elif fake:
        # it over-sharpens where the other generator over-smooths: more fine detail than a photo
        fine = rng.normal(0.0, level.sharpen * detail + 1e-12, balanced.shape)
        img, group = unbalanced + fine, f"upsample_x{2**steps}"
    else:
        # fine, non-periodic detail scaled to the artefact this image would have had, so that PNG
        # file size (which grows with high-frequency energy) says nothing about the class
        noise = np.hypot(_MATCH * artefact, detail) + 1e-12
        img, group = balanced + rng.normal(0.0, noise, balanced.shape), ""
    img = _normalise(rng, img)
    img = img + rng.normal(0.0, rng.uniform(*level.noise) / 255.0, img.shape)
    pixels = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return pixels, group


def _scene(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random colour scene in roughly [0, 1]: 1/f luminance and chroma noise plus soft ellipses."""
    lum = _pink_noise(rng, n, rng.uniform(0.9, 1.5))
    chroma = [_pink_noise(rng, n, rng.uniform(1.4, 2.0)) for _ in range(2)]
    img = 0.5 + 0.15 * lum[:, :, None] * np.ones(3)
    for field in chroma:
        direction = rng.normal(size=3)
        img += 0.06 * field[:, :, None] * (direction / np.linalg.norm(direction))
    yy, xx = np.mgrid[0:n, 0:n] / n
    for _ in range(rng.integers(0, 5)):
        cy, cx = rng.uniform(0, 1, 2)
        ry, rx = rng.uniform(0.08, 0.35, 2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        edge = rng.uniform(0.02, 0.15)
        alpha = 1.0 / (1.0 + np.exp((np.sqrt(u**2 + v**2) - 1.0) / edge))
        colour = rng.uniform(0.1, 0.9, 3)
        img = img * (1 - alpha[:, :, None]) + colour * alpha[:, :, None]
    return img


def _pink_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zero-mean, unit-std noise whose amplitude spectrum falls as 1/f**exponent (like natural scenes)."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    f[0, 0] = 1.0
    spectrum = f**-exponent * np.exp(2j * np.pi * rng.random((n, n)))
    spectrum[0, 0] = 0.0
    field = np.fft.ifft2(spectrum).real
    return (field - field.mean()) / (field.std() + 1e-12)


def _upsample2(img: np.ndarray, delta: float) -> np.ndarray:
    """Stride-2 up-sampling along both axes: even pixels copy, odd pixels average their neighbours.

    ``delta`` unbalances the gains (even ``1 - delta/2``, odd ``1 + delta/2``), like a transposed
    convolution whose kernel taps do not sum equally per output phase; the mean is unchanged.
    """
    for axis in (0, 1):
        x = np.moveaxis(img, axis, 0)
        nxt = np.concatenate([x[1:], x[-1:]], axis=0)  # edge pixel repeats at the border
        out = np.empty((2 * x.shape[0],) + x.shape[1:])
        out[0::2] = (1 - delta / 2) * x
        out[1::2] = (1 + delta / 2) * 0.5 * (x + nxt)
        img = np.moveaxis(out, 0, axis)
    return img


def _normalise(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Shift each channel to a random mean and scale to a random contrast, same draws for both classes."""
    centred = img - img.mean(axis=(0, 1))
    return centred * (rng.uniform(*_CONTRAST) / (centred.std() + 1e-12)) + rng.uniform(*_MEAN, 3)
