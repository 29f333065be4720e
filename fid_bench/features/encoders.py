"""Frozen encoders: an image in, a fixed-length float32 vector out.

Every encoder is built cheaply from config (``model.encoder``, through ``hydra.utils.instantiate``):
the constructor only stores and checks parameters; nothing imports torch until ``load()``.

``identity`` names everything its outputs depend on: encoder class and version, model name,
weights, preprocessing parameters, image size, compute dtype, the decoder version and the versions
of the libraries that define the default preprocessing. Weights are the sha256 of a local
checkpoint, the open_clip tag, or for timm "the default pretrained weights of this model name in
this timm version" (timm pins every name to one hub repo; the commit actually loaded is recorded
in the cache's meta.json, and extraction warns when it changes). It is the feature-cache key, and
computing it neither loads the network nor imports torch, so a fully cached job never does.

Interface used by ``extract.extract_features``:

``prepare(device)``  choose the device (sets the compute dtype, hence ``identity``); no loading
``load()``           build the network and its preprocessing (idempotent)
``transform(img)``   per-image preprocessing of a decoded RGB ``PIL.Image``; runs in DataLoader workers
``encode(batch)``    a collated batch -> ``np.ndarray [B, D] float32``
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


@cache
def _version(dist: str) -> str:
    """Installed version of a distribution, read from its metadata (no import of the package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def _check_size(image_size: Any, owner: str) -> int | None:
    if image_size is None:
        return None
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        size = -1
    if size <= 0 or size != image_size:
        raise FidBenchError(f"{owner}: image_size must be a positive integer or null, got {image_size!r}")
    return size


class Encoder(ABC):
    """Base class: identity, device choice and the pickling rule (a loaded network never travels)."""

    #: bump in a subclass whenever its outputs change for identical parameters
    version: int = 1

    def __init__(self) -> None:
        self.device = "cpu"
        self._model: Any = None
        self._loaded_info: dict[str, Any] = {}

    # -- identity -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def name(self) -> str:
        """Short human name, e.g. ``spectrum`` or ``timm:resnet50``."""

    @abstractmethod
    def _identity_fields(self) -> dict[str, Any]:
        """Everything besides class, version, decoder and dtype that the outputs depend on."""

    @property
    def compute_dtype(self) -> str:
        return "float32"

    @property
    def identity(self) -> str:
        from fid_bench.data.decode import DECODER_VERSION

        fields = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "version": self.version,
            # the decoded pixels: our decoding rules and the Pillow (libjpeg, libpng) that applies them
            "decoder": [DECODER_VERSION, _version("pillow")],
            "dtype": self.compute_dtype,
            **self._identity_fields(),
        }
        return f"{type(self).__name__}:{self.identity_name} " + json.dumps(
            fields, sort_keys=True, separators=(",", ":")
        )

    @property
    def identity_name(self) -> str:
        """The name in ``identity``: ``name``, unless that depends on something the outputs do not."""
        return self.name

    @property
    def short(self) -> str:
        """``name [hash]``: how logs refer to one exact identity."""
        return f"{self.name} [{hashlib.sha256(self.identity.encode()).hexdigest()[:8]}]"

    def describe(self) -> dict[str, Any]:
        """Parameters and what loading resolved (weights file, revision, preprocessing): cache metadata."""
        return {"name": self.name, "identity": self.identity, **self._loaded_info}

    # -- lifecycle ------------------------------------------------------------------------------
    def prepare(self, device: str) -> None:
        """Pick the device the network will run on (before ``identity`` is used as a cache key)."""
        if self._model is not None and device != self.device:
            raise RuntimeError("prepare() after load(): build a new encoder for another device")
        self.device = device

    def load(self) -> None:
        """Build the network and preprocessing (no-op when already loaded)."""
        return None  # an encoder without a network has nothing to build

    @abstractmethod
    def transform(self, img: Image.Image) -> Any:
        """Per-image preprocessing (runs in DataLoader workers)."""

    @abstractmethod
    def encode(self, batch: Any) -> np.ndarray:
        """A collated batch of ``transform`` outputs -> ``[B, D]`` float32."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # workers only need the transform; the network stays in the main process
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.short})"


# =========================================================================================
# Spectrum: hand-made frequency features, no weights
# =========================================================================================
_EPS = 1e-8
# RGB -> Y, Cb, Cr as JPEG defines them (chroma centred on zero)
_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
DEFAULT_TILE = 64
# pixels (images x tiles x t x t) computed at once: a few MB of buffers, which stay in cache
# (larger slices measured slower on large images)
_MAX_PIXELS = 1 << 16
_MIN_SIDE = 16  # smaller images are up-sampled to this (the features need at least 2 DCT blocks per side)


@lru_cache(maxsize=16)
def _geometry(t: int, radial_bins: int) -> dict[str, np.ndarray]:
    """Per tile size: Hann window, radial/angular bin of each cell of the half spectrum, 8x8 DCT basis.

    The spectrum of a real signal is point-symmetric, so ``rfft2``'s half plane holds it all:
    every column but the first and the Nyquist one stands for two cells of the full plane (with
    the same ring and, as angles are taken modulo pi, the same sector) and is weighted 2.
    """
    fy = np.fft.fftfreq(t)[:, None]
    fx = np.fft.rfftfreq(t)[None, :]
    r = np.sqrt(fx**2 + fy**2) / 0.5  # 1.0 = Nyquist along an axis; corners reach sqrt(2)
    radial = np.minimum((r * radial_bins).astype(np.int64), radial_bins)  # last bin: the corners
    angle = np.arctan2(np.broadcast_to(fy, r.shape), np.broadcast_to(fx, r.shape)) % np.pi
    sector = np.minimum((angle / np.pi * 8).astype(np.int64), 7)
    weight = np.full(r.shape, 2.0)
    weight[:, 0] = 1.0
    if t % 2 == 0:
        weight[:, -1] = 1.0
    high = (radial >= radial_bins // 2) & (radial < radial_bins)
    win = np.hanning(t)
    k = np.arange(8)
    dct = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * np.sqrt(2 / 8)
    dct[0] /= np.sqrt(2)
    return {
        "window": np.outer(win, win).astype(np.float32),
        "radial": radial.ravel(),
        "weight": weight.ravel(),
        "radial_count": np.bincount(radial.ravel(), weight.ravel(), minlength=radial_bins + 1),
        "high": high.ravel(),
        "sector": sector[high],
        "sector_weight": weight[high],
        "sector_count": np.maximum(np.bincount(sector[high], weight[high], minlength=8), 1.0),
        "dct": dct.astype(np.float32),
    }


class SpectrumEncoder(Encoder):
    """Frequency fingerprints of generated images, computed with numpy; no weights, no network.

    The image is cut into up to ``max_tiles`` square tiles of side ``t`` (``image_size`` rounded
    down to a multiple of 8, default 64; the image's shorter side, rounded down, when smaller), on a grid
    at offsets that are multiples of 8 so 8x8 blocks stay aligned with JPEG's. Nothing is resized
    (resampling would erase the high-frequency traces the features look for) except images under
    16 px. All features live on normalised frequency axes, so every input size gives the same
    vector. ``transform`` (in the DataLoader workers) only cuts the tiles; ``encode`` computes the
    features of a whole batch at once. Per tile, in YCbCr, averaged over tiles (power spectra are
    averaged before the log):

    * radial profile of the log power spectrum (``radial_bins`` rings up to Nyquist plus the
      corners) of each channel and of its high-pass residual (pixel minus its 3x3 mean) -- upsampling
      and denoising leave bumps and dips here;
    * angular profile (8 sectors) of the upper half of the spectrum, relative to its mean --
      grid-aligned periodic artefacts;
    * the luma log spectrum on a 4x4 grid of the first quadrant;
    * 8x8 block DCT of the luma: log mean magnitude and log coefficient of variation of each of
      the 64 frequencies;
    * residual statistics: log standard deviation and kurtosis per channel, correlation of the
      R, G, B residuals (demosaicing couples them in camera images);
    * colour moments: RGB mean and standard deviation, saturation mean and standard deviation.

    On 3,000 CIFAKE training images a standardised logistic regression on these features reaches
    ROC-AUC about 0.95 on 2,000 CIFAKE test images (docs/BENCHMARKS.md).
    """

    version = 1

    def __init__(self, image_size: int | None = None, max_tiles: int = 9, radial_bins: int = 12) -> None:
        super().__init__()
        self.image_size = _check_size(image_size, "SpectrumEncoder")
        if int(max_tiles) < 1 or int(radial_bins) < 4:
            raise FidBenchError(
                f"SpectrumEncoder: max_tiles must be >= 1 and radial_bins >= 4, got {max_tiles}, {radial_bins}"
            )
        self.max_tiles = int(max_tiles)
        self.radial_bins = int(radial_bins)
        if self.image_size is not None and self.image_size < _MIN_SIDE:
            raise FidBenchError(
                f"SpectrumEncoder: image_size (tile side) must be >= {_MIN_SIDE}, got {image_size}"
            )
        # tiles are whole 8x8 blocks (the DCT features and JPEG's grid)
        self.tile = (self.image_size or DEFAULT_TILE) // 8 * 8

    @property
    def name(self) -> str:
        return "spectrum"

    @property
    def compute_dtype(self) -> str:
        return "float32"  # numpy on the CPU whatever the device

    def _identity_fields(self) -> dict[str, Any]:
        return {
            "tile": self.tile,
            "max_tiles": self.max_tiles,
            "radial_bins": self.radial_bins,
            "libs": {"numpy": _version("numpy")},
        }

    def prepare(self, device: str) -> None:
        self.device = "cpu"  # no network: the device does not matter

    @property
    def dim(self) -> int:
        return len(self.feature_names())

    def feature_names(self) -> list[str]:
        """One name per output column (for feature importances)."""
        nb = self.radial_bins + 1
        signals = [f"{kind}_{ch}" for kind in ("img", "res") for ch in ("y", "cb", "cr")]
        names = [f"radial_{s}_{i}" for s in signals for i in range(nb)]
        names += [f"angular_{s}_{i}" for s in signals for i in range(8)]
        names += [f"spec2d_y_{i}_{j}" for i in range(4) for j in range(4)]
        names += [f"dct_mean_{u}{v}" for u in range(8) for v in range(8)]
        names += [f"dct_cv_{u}{v}" for u in range(8) for v in range(8)]
        names += [f"res_logstd_{c}" for c in ("y", "cb", "cr")] + [f"res_kurt_{c}" for c in ("y", "cb", "cr")]
        names += ["res_corr_rg", "res_corr_rb", "res_corr_gb"]
        names += [f"rgb_mean_{c}" for c in "rgb"] + [f"rgb_std_{c}" for c in "rgb"] + ["sat_mean", "sat_std"]
        return names

    # -- per image: decode-side work only, in the DataLoader workers ------------------------------
    def transform(self, img: Image.Image) -> np.ndarray:
        """The image's tiles, ``uint8 [K, t, t, 3]`` (small to ship from a worker; no resampling)."""
        from PIL import Image as PILImage

        if min(img.size) < _MIN_SIDE:
            scale = _MIN_SIDE / min(img.size)
            size = (max(_MIN_SIDE, round(img.width * scale)), max(_MIN_SIDE, round(img.height * scale)))
            img = img.resize(size, PILImage.Resampling.BICUBIC)
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        h, w = arr.shape[:2]
        t = min(self.tile, min(h, w) // 8 * 8)
        per_axis = max(1, int(np.sqrt(self.max_tiles)))
        ys, xs = _offsets(h, t, per_axis), _offsets(w, t, per_axis)
        return np.stack([arr[y : y + t, x : x + t] for y in ys for x in xs])

    def features(self, img: Image.Image) -> np.ndarray:
        """The feature vector of one image (``encode`` of a batch of one)."""
        return self.encode([self.transform(img)])[0]

    # -- per batch: the features, vectorised over every image of the batch --------------------------
    def encode(self, batch: Any) -> np.ndarray:
        """Features of a batch of ``transform`` outputs: a stacked array or a list of tile arrays.

        Images with the same tile layout are computed together (numpy's per-call overhead, not
        arithmetic, dominates for small images), in slices that bound the memory used.
        """
        items = list(batch) if not isinstance(batch, np.ndarray) else batch
        out = np.empty((len(items), self.dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, tiles in enumerate(items):
            groups.setdefault(tuple(np.shape(tiles)), []).append(i)
        for shape, idx in groups.items():
            k, t = shape[0], shape[1]
            step = max(1, _MAX_PIXELS // (k * t * t))
            for start in range(0, len(idx), step):
                sel = idx[start : start + step]
                tiles = np.stack([np.asarray(items[i]) for i in sel]).astype(np.float32) / np.float32(255.0)
                out[sel] = self._features(tiles)
        return out

    def _features(self, tiles: np.ndarray) -> np.ndarray:
        """Feature rows of ``tiles`` (``[B, K, t, t, 3]`` RGB in 0..1, float32)."""
        b, k, t = tiles.shape[:3]
        geo = _geometry(t, self.radial_bins)
        nb = self.radial_bins + 1
        rgb = tiles.transpose(0, 1, 4, 2, 3)  # [B, K, 3, t, t]
        rgb_res = rgb - _box3(rgb)
        # YCbCr is linear in RGB, so its residual is the same matrix applied to the RGB residual
        ycc = np.einsum("ij,bkjhw->bkihw", _YCC, rgb)
        ycc_res = np.einsum("ij,bkjhw->bkihw", _YCC, rgb_res)
        centred = ycc - ycc.mean(axis=(3, 4), keepdims=True)
        signals = np.concatenate([centred, ycc_res], axis=2) * geo["window"]  # [B, K, 6, t, t]
        spec = np.fft.rfft2(signals)  # the half plane (see _geometry)
        power = (spec.real**2 + spec.imag**2).mean(axis=1)  # [B, 6, t, t//2+1]: averaged over tiles
        logp = np.log(power + _EPS).reshape(b * 6, -1)

        groups = (np.arange(b * 6) * nb)[:, None]
        weighted = (logp * geo["weight"]).ravel()
        radial = np.bincount((geo["radial"][None, :] + groups).ravel(), weighted, minlength=b * 6 * nb)
        radial = radial.reshape(b, 6, nb) / geo["radial_count"]
        high = logp[:, geo["high"]] * geo["sector_weight"]
        groups = (np.arange(b * 6) * 8)[:, None]
        angular = np.bincount((geo["sector"][None, :] + groups).ravel(), high.ravel(), minlength=b * 6 * 8)
        angular = angular.reshape(b, 6, 8) / geo["sector_count"]
        angular -= angular.mean(axis=2, keepdims=True)
        half = t // 2
        quad = logp.reshape(b, 6, t, -1)[:, 0, :half, :half]
        spec2d = quad.reshape(b, 4, half // 4, 4, half // 4).mean(axis=(2, 4))

        # 8x8 block DCT of the luma on the 0..255 scale JPEG works on
        luma = ycc[:, :, 0] * np.float32(255.0)
        blocks = luma.reshape(b, k, t // 8, 8, t // 8, 8).transpose(0, 1, 2, 4, 3, 5).reshape(b, -1, 8, 8)
        coef = np.abs(geo["dct"] @ blocks @ geo["dct"].T).reshape(b, -1, 64)
        dct_mean = np.log(coef.mean(axis=1) + 1e-3)
        dct_cv = np.log(coef.std(axis=1) + 1e-3) - dct_mean

        r = ycc_res.transpose(0, 2, 1, 3, 4).reshape(b, 3, -1)
        std = r.std(axis=2)
        kurt = ((r / (std[:, :, None] + _EPS)) ** 4).mean(axis=2)
        corr = _corr(rgb_res.transpose(0, 2, 1, 3, 4).reshape(b, 3, -1))
        flat = rgb.transpose(0, 2, 1, 3, 4).reshape(b, 3, -1)
        mx, mn = flat.max(axis=1), flat.min(axis=1)
        sat = (mx - mn) / (mx + _EPS)
        parts = [
            radial.reshape(b, -1),
            angular.reshape(b, -1),
            spec2d.reshape(b, -1),
            dct_mean,
            dct_cv,
            np.log(std + _EPS),
            kurt,
            corr,
            flat.mean(axis=2),
            flat.std(axis=2),
            sat.mean(axis=1, keepdims=True),
            sat.std(axis=1, keepdims=True),
        ]
        return np.concatenate(parts, axis=1).astype(np.float32)


def _offsets(n: int, t: int, k: int) -> list[int]:
    """Up to ``k`` tile starts spread over ``[0, n - t]``, on multiples of 8 (JPEG block grid)."""
    last = (n - t) // 8 * 8
    if k == 1 or last == 0:
        return [last // 2 // 8 * 8]  # one tile: the centre
    return sorted({int(round(v / 8)) * 8 for v in np.linspace(0, last, k)})


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean over the last two axes, reflecting at the borders."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="reflect")
    h, w = x.shape[-2:]
    rows = p[..., 0:h, :] + p[..., 1 : h + 1, :] + p[..., 2 : h + 2, :]
    return (rows[..., 0:w] + rows[..., 1 : w + 1] + rows[..., 2 : w + 2]) / np.float32(9.0)


def _corr(x: np.ndarray) -> np.ndarray:
    """Per row of the batch, correlations (rg, rb, gb) of ``x`` [B, 3, N]; 0 for a flat channel."""
    x = x - x.mean(axis=2, keepdims=True)
    cov = x @ x.transpose(0, 2, 1) / x.shape[2]
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    c = cov / (sd[:, :, None] * sd[:, None, :] + _EPS)
    return np.stack([c[:, 0, 1], c[:, 0, 2], c[:, 1, 2]], axis=1)


# =========================================================================================
# Torch encoders: timm and open_clip, frozen
# =========================================================================================
class TorchEncoder(Encoder):
    """A frozen torch network: inference mode, bf16 autocast and channels_last on CUDA."""

    def __init__(
        self,
        pretrained: bool,
        weights: str | None,
        image_size: int | None,
        amp: bool,
        init_seed: int,
    ) -> None:
        super().__init__()
        self.pretrained = bool(pretrained)
        self.weights = str(weights) if weights else None
        self.image_size = _check_size(image_size, type(self).__name__)
        self.amp = bool(amp)
        self.init_seed = int(init_seed)
        self._transform: Any = None
        self._channels_last = False
        self._micro = _MicroBatch()

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.amp and str(self.device).startswith("cuda") else "float32"

    def _weights_identity(self, default: dict[str, Any]) -> dict[str, Any]:
        if self.weights:
            from fid_bench.features.weights import check_weights_file, file_sha256

            return {"file_sha256": file_sha256(check_weights_file(self.weights))}
        if self.pretrained:
            return default
        # a random network is only reproducible with its seed and the torch that drew it
        return {"random_init_seed": self.init_seed, "torch": _version("torch")}

    def load(self) -> None:
        if self._model is not None:
            return
        import torch

        if not (self.pretrained or self.weights):
            # seeded so that two processes build the same random network (and may share its cache)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                model, transform = self._build()
        else:
            model, transform = self._build()
        model.eval().requires_grad_(False)
        self._channels_last = self.device.startswith("cuda") and self._is_cnn(model)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model.to(self.device)
        self._transform = transform
        self._loaded_info["preprocess"] = _describe_transform(transform)

    @abstractmethod
    def _build(self) -> tuple[Any, Any]:
        """The network (on the CPU) and its eval transform."""

    @staticmethod
    def _is_cnn(model: Any) -> bool:
        return not hasattr(model, "patch_embed") and not hasattr(model, "transformer")

    def transform(self, img: Image.Image) -> Any:
        if self._transform is None:
            raise RuntimeError(f"{self}: load() before transform()")
        return self._transform(img)

    def encode(self, batch: Any) -> np.ndarray:
        import torch

        if self._model is None:
            self.load()
        x = torch.as_tensor(batch).to(self.device, non_blocking=True)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if self.compute_dtype == "bfloat16"
            else contextlib.nullcontext()
        )
        if str(self.device).startswith("cuda"):
            return self._forward(x, autocast)
        # on the CPU, forward in the micro-batch size that measured fastest (see _MicroBatch)
        outs, start = [], 0
        while start < len(x):
            size, count = self._micro.segment(len(x) - start, len(x))
            part = x[start : start + count]
            t0 = time.perf_counter()
            outs += [self._forward(part[i : i + size], autocast) for i in range(0, len(part), size)]
            self._micro.record(size, len(part), time.perf_counter() - t0)
            start += count
        return np.concatenate(outs)

    def _forward(self, x: Any, autocast: Any) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast:
            out = self._model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().flatten(1).cpu().numpy()


class _MicroBatch:
    """The forward batch size for the CPU, chosen by timing the first images.

    On a CPU the fastest size depends on the model: a ResNet-50 at 224 px measured 166 ms per
    image one at a time and 314 ms in batches of 64 (the activations of a big batch leave the
    cache), while a ViT-B/16 went from 722 ms to 457 ms in batches of 32. So the first images
    are computed in trial segments -- a short untimed warm-up (lazy initialisation would distort
    it), then each candidate size on ``TRIAL_IMAGES`` images -- and the size with the lowest time
    per image is kept. Nothing is wasted: every trial computes real features.
    """

    WARM_UP = 2
    CANDIDATES = (1, 4, 16, 64)

    def __init__(self) -> None:
        self.per_image: dict[int, float] = {}
        self.chosen: int | None = None
        self._warm = False
        self._batch = 0  # the largest batch seen: no trial size beyond it

    def segment(self, remaining: int, batch: int) -> tuple[int, int]:
        """(micro-batch size, images) for the next stretch of a batch of ``batch`` images."""
        self._batch = max(self._batch, batch)
        if self.chosen is not None:
            return self.chosen, remaining
        if not self._warm:
            return 1, min(self.WARM_UP, remaining)
        todo = self._todo()
        if not todo:
            self._choose()
            return self.chosen, remaining
        return todo[0], min(self._trial_images(todo[0]), remaining)

    def record(self, size: int, n: int, seconds: float) -> None:
        if self.chosen is not None:
            return
        if not self._warm:
            self._warm = True
            return
        if n < self._trial_images(size):
            return  # cut short by the end of the batch: tried again on the next one
        self.per_image[size] = seconds / n
        # a size clearly slower than the best so far: larger ones will not do better (and cost most)
        if (size > 1 and self.per_image[size] > 1.25 * min(self.per_image.values())) or not self._todo():
            self._choose()

    def _todo(self) -> list[int]:
        return [c for c in self.CANDIDATES if c <= self._batch and c not in self.per_image]

    def _trial_images(self, size: int) -> int:
        # each size runs on at least 8 images, so small sizes are timed over several calls
        return min(max(size, 8), self._batch)

    def _choose(self) -> None:
        self.chosen = min(self.per_image, key=self.per_image.__getitem__) if self.per_image else 1
        log.debug("CPU forward micro-batch %d (seconds per image by size: %s)", self.chosen, self.per_image)


def _describe_transform(transform: Any) -> str:
    return " ".join(str(transform).split())


class TimmEncoder(TorchEncoder):
    """Any timm model, frozen, with its classifier removed (``num_classes=0``: pooled features).

    Preprocessing is the model's own: timm's data config resolved for the model and its eval
    transform. ``image_size`` overrides the input size: ViT-style models are built for it
    (``img_size``; position embeddings of pretrained weights are resampled), convolutional ones
    just receive it through the transform.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        amp: bool = True,
        init_seed: int = 0,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise FidBenchError(f"TimmEncoder: model_name must be a timm model name, got {model_name!r}")
        self.model_name = model_name
        super().__init__(pretrained, weights, image_size, amp, init_seed)

    @property
    def name(self) -> str:
        return f"timm:{self.model_name}"

    def _identity_fields(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            # timm pins each model's default tag (one hub repo) and preprocessing per release
            "weights": self._weights_identity({"hub": "timm-default-pretrained"}),
            "image_size": self.image_size,
            "libs": {
                "timm": _version("timm"),
                "torchvision": _version("torchvision"),
            },
        }

    def _build(self) -> tuple[Any, Any]:
        from timm.data import create_transform, resolve_data_config

        from fid_bench.features.weights import create_timm_model

        kwargs: dict[str, Any] = {"num_classes": 0}
        if self.image_size:
            kwargs["img_size"] = self.image_size
        try:
            model = create_timm_model(
                self.model_name, pretrained=self.pretrained, weights=self.weights, **kwargs
            )
        except TypeError as err:
            if "img_size" not in str(err):
                raise
            del kwargs["img_size"]  # a CNN: any input size works, the transform sets it
            model = create_timm_model(
                self.model_name, pretrained=self.pretrained, weights=self.weights, **kwargs
            )
        args = {"input_size": (3, self.image_size, self.image_size)} if self.image_size else {}
        data_cfg = resolve_data_config(args, model=model)
        transform = create_transform(**data_cfg, is_training=False)
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        self._loaded_info.update(
            data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
            weights=(
                {k: cfg.get(k) for k in ("hf_hub_id", "tag", "file", "hf_hub_revision") if cfg.get(k)}
                if self.pretrained or self.weights
                else {"random_init_seed": self.init_seed}
            ),
            num_features=int(getattr(model, "num_features", 0)),
        )
        return model, transform


class OpenClipEncoder(TorchEncoder):
    """The image tower of an open_clip CLIP model, frozen (the text tower is dropped after loading).

    Features are the tower's projected embedding (``encode_image`` without normalisation).
    Preprocessing is the eval transform ``open_clip.create_model_and_transforms`` returns for the
    architecture and tag. ``image_size`` other than the native size works only where open_clip
    can adapt the tower; otherwise loading fails with a one-line error.
    """

    def __init__(
        self,
        arch: str,
        pretrained_tag: str | None = None,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        amp: bool = True,
        init_seed: int = 0,
    ) -> None:
        if not isinstance(arch, str) or not arch:
            raise FidBenchError(f"OpenClipEncoder: arch must be an open_clip architecture, got {arch!r}")
        self.arch = arch
        self.pretrained_tag = pretrained_tag or None
        super().__init__(pretrained, weights, image_size, amp, init_seed)

    @property
    def name(self) -> str:
        tag = "file" if self.weights else (self.pretrained_tag if self.pretrained else "random")
        return f"open_clip:{self.arch}/{tag}"

    def _identity_fields(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            # an open_clip tag names one fixed checkpoint and its preprocessing
            "weights": self._weights_identity({"tag": self.pretrained_tag}),
            "image_size": self.image_size,
            "libs": {
                "open_clip": _version("open_clip_torch"),
                "torchvision": _version("torchvision"),
            },
        }

    def _build(self) -> tuple[Any, Any]:
        from fid_bench.features.weights import create_open_clip_model_and_transform

        model, preprocess, info = create_open_clip_model_and_transform(
            self.arch,
            self.pretrained_tag,
            pretrained=self.pretrained,
            weights=self.weights,
            force_image_size=self.image_size,
        )
        visual = model.visual
        del model  # the text tower is never used: free it
        self._loaded_info.update(weights=info, num_features=int(getattr(visual, "output_dim", 0)))
        return visual, preprocess
