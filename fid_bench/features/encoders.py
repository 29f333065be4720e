"""The Encoder contract feature extraction consumes, and the frozen-backbone encoder.

An encoder turns a decoded RGB image into a fixed-length float32 vector. It is built cheaply (from
config, through ``hydra.utils.instantiate``); nothing imports torch until ``load()``.

``identity`` names everything its outputs depend on: the code (``cache_id`` and ``version``), the
model, weights, preprocessing parameters, image size, compute dtype, the decoder version and the
versions of the libraries that define the default preprocessing. Weights are the sha256 of a local
checkpoint, the open_clip tag, or for timm "the default pretrained weights of this model name in
this timm version" (timm pins every name to one hub repo; the commit actually loaded is recorded
in the cache's meta.json, and extraction refuses to add features of another commit to that folder).
It is the feature-cache key, and computing it neither loads the network nor imports torch, so a
fully cached job never does.

Interface used by ``extract.extract_features`` through ``Encoder.extract`` (only ``identity``,
``transform`` and ``encode`` are required of an object that does not derive from ``Encoder``:
``as_encoder``, hence ``build_encoder``, wraps it in a ``MinimalEncoder``):

``prepare(device)``  choose the device (sets the compute dtype, hence ``identity``); no loading
``load()``           build the network and its preprocessing (idempotent)
``transform(img)``   per-image preprocessing of a decoded RGB ``PIL.Image``; runs in DataLoader workers
``encode(batch)``    a collated batch -> ``np.ndarray [B, D] float32``

``FrozenEncoder`` wraps any ``fid_bench.backbones`` backbone; ``spectrum.SpectrumEncoder`` is the
hand-made one. ``build_encoder`` turns a ``model.backbone`` node into either.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fid_bench.backbones import layers as block_layers
from fid_bench.backbones.base import Backbone, lib_version
from fid_bench.backbones.native_crops import native_windows
from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


class Encoder(ABC):
    """Base class: identity, device choice and the pickling rule (a loaded network never travels)."""

    #: bump in a subclass whenever its outputs change for identical parameters
    version: int = 1
    #: the namespace its features are cached under; None = the class path. A constant in classes that
    #: moved, so moving code never orphans a cache
    cache_id: ClassVar[str | None] = None

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

        cache_id = self.cache_id or f"{type(self).__module__}.{type(self).__qualname__}"
        fields = {
            "class": cache_id,
            "version": self.version,
            # the decoded pixels: our decoding rules and the Pillow (libjpeg, libpng) that applies them
            "decoder": [DECODER_VERSION, lib_version("pillow")],
            "dtype": self.compute_dtype,
            **self._identity_fields(),
        }
        return f"{cache_id.rsplit('.', 1)[-1]}:{self.identity_name} " + json.dumps(
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

    def model_files(self) -> dict[str, str]:
        """``{path: sha256}`` of the files outside the code the outputs depend on (an ONNX graph), as
        they are now; a predictor records them at training time and checks them before predicting."""
        return {}

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

    # -- extraction -----------------------------------------------------------------------------
    def extract(
        self, paths: Sequence[str], sha1s: Sequence[str], cache_dir: Path, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Features of ``paths`` through the cache of this encoder's identity, and the extraction's
        stats (``extract.extract_features``, whose keywords ``kwargs`` are). An encoder whose features
        come from other caches (a concatenation) overrides it; wrappers (alignment, augmentation)
        extract through their own identity, as this does."""
        from fid_bench.features import extract as extraction  # looked up here: one place to stub it

        return extraction.extract_features(self, paths, sha1s, cache_dir, **kwargs)


class FrozenEncoder(Encoder):
    """Any backbone, frozen: eval mode, no gradients; bf16 autocast and channels_last on CUDA.

    Its identity is the backbone's (``cache_id``, ``version``, ``identity_fields``) plus the compute
    dtype and ``init_seed``, the seed a backbone without pretrained weights is drawn with (seeded so
    two processes build the same random network and may share its cache).

    A backbone with ``model.resize=native`` (``backbone.native``: crops, mode, seed) gets no eval
    transform: ``transform`` cuts ``uint8`` windows of the input size from the original pixels
    (``fid_bench.backbones.native_crops``, as the ONNX path does), ``encode`` normalises them and
    averages each image's window features into its row.
    """

    def __init__(self, backbone: Backbone, amp: bool = True, init_seed: int = 0) -> None:
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise FidBenchError(f"FrozenEncoder needs a fid_bench backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.cache_id = backbone.cache_id
        self.version = backbone.version
        self.amp = bool(amp)
        self.init_seed = int(init_seed)
        self._transform: Any = None
        self.preprocessing: Any = None  # the backbone's Preprocessing, known once loaded
        self._channels_last = False
        self._micro = _MicroBatch()
        # model.layers: forward hooks on the chosen blocks collect their outputs (load() sets them)
        self._hooked: list[Any] = []
        self._captured: list[Any] = []
        self._seq_first = False

    @property
    def name(self) -> str:
        return self.backbone.name

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_hooked"], state["_captured"] = [], []  # hooks belong to the network, which stays here
        return state

    def _identity_fields(self) -> dict[str, Any]:
        return self.backbone.identity_fields(self.init_seed)

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.amp and str(self.device).startswith("cuda") else "float32"

    def load(self) -> None:
        if self._model is not None:
            return
        import torch

        if self.backbone.random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                built = self.backbone.build()
        else:
            built = self.backbone.build()
        pp = built.preprocessing
        native = getattr(self.backbone, "native", None)  # model.resize=native: crops, mode, seed
        if native:
            # windows of the original pixels as uint8 (a quarter of a float tensor to ship from a
            # worker); encode() normalises them and averages their features
            transform: Any = functools.partial(
                native_windows, size=pp.size, pp=native, interpolation=pp.interpolation
            )
            described = (
                f"native: {native['crops']} {native['crop_mode']} window(s) of {pp.size[0]}x{pp.size[1]} "
                f"(seed {native['crop_seed']}) from the original pixels, mean={list(pp.mean)} std={list(pp.std)}"
            )
        else:
            transform = self.backbone.eval_transform(pp)
            described = _describe_transform(transform)
        self.preprocessing = pp  # declared by the backbone; export-onnx reads it
        std = np.asarray(pp.std, dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add, as the ONNX path normalises
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-np.asarray(pp.mean, dtype=np.float32) / std).astype(np.float32)
        model = built.network.eval().requires_grad_(False)
        self._channels_last = self.device.startswith("cuda") and self._is_cnn(model)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model.to(self.device)
        self._transform = transform
        info = dict(built.info)
        if self.backbone.random_init:
            info["weights"] = {**(info.get("weights") or {}), "random_init_seed": self.init_seed}
        self._loaded_info.update(info, num_features=built.num_features, preprocess=described)
        layers = getattr(self.backbone, "layers", None)
        if layers is not None:
            self._hook_blocks(model, layers)

    def _hook_blocks(self, model: Any, layers: Any) -> None:
        """Forward hooks on the ``model.layers`` blocks: each forward stores their outputs in order."""
        blocks, self._seq_first = block_layers.find_torch_blocks(model)
        chosen = block_layers.resolve_blocks(layers, len(blocks), self.name)
        for slot, b in enumerate(chosen):

            def hook(_module: Any, _inputs: Any, output: Any, slot: int = slot) -> None:
                self._captured[slot] = output[0] if isinstance(output, (tuple, list)) else output

            self._hooked.append(blocks[b].register_forward_hook(hook))
        self._captured = [None] * len(chosen)
        self._loaded_info.update(
            blocks_in_model=len(blocks), layout=block_layers.layout(chosen, self.backbone.pools)
        )

    @staticmethod
    def _is_cnn(model: Any) -> bool:
        return not hasattr(model, "patch_embed") and not hasattr(model, "transformer")

    def transform(self, img: Image.Image) -> Any:
        if self._transform is None:
            raise RuntimeError(f"{self}: load() before transform()")
        return self._transform(img)

    def normalise(self, pixels: Any) -> Any:
        """``uint8 [N, H, W, 3]`` windows (``resize=native``) -> the float ``[N, 3, H, W]`` input tensor."""
        import torch

        if self._model is None:
            self.load()
        x = torch.as_tensor(np.asarray(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float()
        scale = torch.from_numpy(self._scale).view(1, 3, 1, 1)
        return (x * scale + torch.from_numpy(self._offset).view(1, 3, 1, 1)).contiguous()

    def encode(self, batch: Any) -> np.ndarray:
        import torch

        if self._model is None:
            self.load()
        if getattr(batch, "ndim", 0) == 5:  # resize=native: [B, crops, H, W, 3] -> crops' features averaged
            b, n = batch.shape[:2]
            flat = self.encode(self.normalise(np.asarray(batch).reshape(b * n, *batch.shape[2:])))
            return flat.reshape(b, n, -1).mean(axis=1)
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
        if self._hooked:
            hidden = [h.transpose(0, 1) if self._seq_first else h for h in self._captured]
            pools = self.backbone.pools
            return np.concatenate(
                [block_layers.pool_tokens(h.float().cpu().numpy(), pools) for h in hidden], axis=1
            )
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


def build_encoder(node: Mapping[str, Any] | None) -> Any:
    """The encoder of a ``model.backbone`` config node: a backbone frozen, or an encoder as it is.

    ``None`` or a backbone without meaningful frozen features is a one-line error.
    """
    from hydra.utils import instantiate

    if node is None:
        raise FidBenchError("model.backbone is null: no frozen encoder; use classifier=finetune")
    return as_encoder(instantiate(node))


class AlteringEncoder(Encoder):
    """An encoder that alters each image before ``inner`` sees it (``AlignedEncoder``,
    ``AugmentedEncoder``): everything but the alteration is the inner encoder's, and the features are
    cached under the inner identity followed by the alteration's ``key``."""

    inner: Any

    @property
    @abstractmethod
    def key(self) -> str:
        """What the alteration does, as it enters the cache identity."""

    @abstractmethod
    def alter(self, img: Any) -> Any:
        """The altered image the inner encoder transforms."""

    def described(self) -> dict[str, Any]:
        """What ``describe`` adds about the alteration."""
        return {}

    @property
    def identity(self) -> str:
        return f"{self.inner.identity} {self.key}"

    def _identity_fields(self) -> dict[str, Any]:
        return {}

    @property
    def compute_dtype(self) -> str:
        return getattr(self.inner, "compute_dtype", "float32")

    def describe(self) -> dict[str, Any]:
        inner = self.inner.describe() if hasattr(self.inner, "describe") else {}
        return {**inner, "name": self.name, "identity": self.identity, **self.described()}

    def prepare(self, device: str) -> None:
        self.inner.prepare(device)
        self.device = getattr(self.inner, "device", device)

    def load(self) -> None:
        self.inner.load()

    def transform(self, img: Any) -> Any:
        return self.inner.transform(self.alter(img))

    def encode(self, batch: Any) -> np.ndarray:
        return self.inner.encode(batch)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)  # the inner encoder drops its own network when pickled


def as_encoder(built: Any) -> Any:
    """A built backbone frozen, an object offering only ``identity``, ``transform`` and ``encode``
    (the documented minimum) as a ``MinimalEncoder``, anything else as it is; also used by encoders
    that wrap others (alignment, concatenation)."""
    if isinstance(built, Backbone):
        if not built.frozen_features:
            raise FidBenchError(f"model={built.name} has no frozen encoder; use classifier=finetune")
        return FrozenEncoder(built)
    if not isinstance(built, Encoder) and all(hasattr(built, a) for a in ("identity", "transform", "encode")):
        return MinimalEncoder(built)
    return built


class MinimalEncoder(Encoder):
    """Wraps an object offering only ``identity``, ``transform`` and ``encode`` (the documented minimum);
    its ``prepare``, ``load`` and ``name`` are used when it has them."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", type(self.inner).__name__))

    @property
    def identity(self) -> str:
        return str(self.inner.identity)

    def _identity_fields(self) -> dict[str, Any]:
        return {}

    def prepare(self, device: str) -> None:
        self.device = device
        if hasattr(self.inner, "prepare"):
            self.inner.prepare(device)

    def load(self) -> None:
        if hasattr(self.inner, "load"):
            self.inner.load()

    def transform(self, img: Any) -> Any:
        return self.inner.transform(img)

    def encode(self, batch: Any) -> np.ndarray:
        return self.inner.encode(batch)
