"""The Backbone contract both tracks build their network from.

A ``Backbone`` is built cheaply from config (``model.backbone``, through ``hydra.utils.instantiate``):
the constructor stores and checks parameters and imports nothing heavy, so its ``name`` and
``identity_fields`` (the feature-cache key material) never need torch. ``build()`` then creates the
network on the CPU and resolves its preprocessing:

``name``               short human name, e.g. ``timm:resnet50``
``cache_id``           the namespace its frozen features are cached under (a constant string)
``identity_fields()``  everything besides the frozen encoder's own settings that outputs depend on
``build()``            a ``Built``: the ``nn.Module`` (``N x 3 x H x W`` -> ``N x D``), its
                       ``Preprocessing`` and what loading resolved (weights file, hub revision)
``eval_transform()``   a decoded RGB ``PIL.Image`` -> the network's input tensor, made by the
                       family's own library from the declared ``Preprocessing``
``frozen_features``    whether frozen features of it mean anything (a from-scratch CNN: no)
``weight_source()``    where its pretrained weights come from (``fid_bench.backbones.weights``): what
                       ``fid-bench weights get`` fetches and the offline check looks for
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from fid_bench.backbones.layers import layer_spec, pool_spec
from fid_bench.backbones.native_crops import crop_spec
from fid_bench.backbones.weights import (
    LOCAL_OR_RANDOM,
    NO_PRETRAINED,
    WeightSource,
    check_weights_file,
    file_sha256,
)
from fid_bench.errors import FidBenchError

#: how an image reaches the input size: shorter side then centre crop, stretched, longer side then
#: padded (open_clip), or timm's "border" crop
RESIZE_MODES = ("shortest", "squash", "longest", "border")


@cache
def lib_version(dist: str) -> str:
    """Installed version of a distribution, read from its metadata (no import of the package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def check_image_size(image_size: Any, owner: str) -> int | None:
    """``image_size`` as a positive int, or None; anything else is a one-line error."""
    if image_size is None:
        return None
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        size = -1
    if size <= 0 or size != image_size:
        raise FidBenchError(f"{owner}: image_size must be a positive integer or null, got {image_size!r}")
    return size


def native_spec(resize: Any, crops: Any, crop_mode: Any, crop_seed: Any) -> dict[str, Any] | None:
    """A torch backbone's ``model.resize``: ``None`` (its library's own preprocessing) or ``native``
    (the checked crop settings, ``fid_bench.backbones.native_crops``); the crop settings are only
    read with ``native``, as on the ONNX path."""
    if resize is None:
        return None
    if resize != "native":
        raise FidBenchError(
            f"model.resize must be null (the model's own preprocessing) or native for a torch encoder, "
            f"got {resize!r}"
        )
    return crop_spec(crops, crop_mode, crop_seed)


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the network's input, declared once per built backbone.

    ``size`` is (height, width); ``mean``/``std`` normalise ``[0, 1]`` pixels per channel. The
    features track applies all of it (the family's own eval transform); the fine-tuning track
    trains on ``side``-pixel squares (shorter side resized, centre crop) normalised by the same
    ``mean``/``std``.
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise FidBenchError(
                f"preprocessing: resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}"
            )

    @property
    def side(self) -> int:
        """The square side the fine-tuning track trains at (the width, as for every square model)."""
        return int(self.size[-1])

    def finetune_dict(self) -> dict[str, Any]:
        """What the fine-tuning data pipeline and its predictor need (stored with a logged model)."""
        return {"image_size": self.side, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class Built:
    """A backbone's network (on the CPU, trainable) with its preprocessing."""

    network: Any  # torch.nn.Module: N x 3 x H x W -> N x num_features
    preprocessing: Preprocessing
    num_features: int
    #: what building resolved (weights file, hub revision, data config): cache metadata only
    info: dict[str, Any] = field(default_factory=dict)


class Backbone(ABC):
    """One network family's recipe (see the module docstring)."""

    #: the namespace frozen features of this family are cached under; a constant, so that moving
    #: code never orphans a cache (it keeps the encoder class path the features were first cached by)
    cache_id: ClassVar[str]
    #: bump whenever outputs change for identical parameters
    version: ClassVar[int] = 1
    #: whether frozen features of this backbone mean anything (a network trained from scratch: no)
    frozen_features: ClassVar[bool] = True

    @property
    @abstractmethod
    def name(self) -> str:
        """Short human name, e.g. ``timm:resnet50``."""

    @abstractmethod
    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        """Everything its outputs depend on (``init_seed``: the seed a random network is drawn with)."""

    @abstractmethod
    def build(self) -> Built:
        """The network on the CPU with its preprocessing (global torch RNG for random weights)."""

    @property
    def random_init(self) -> bool:
        """Whether ``build()`` draws the weights at random (then the caller's seed decides them)."""
        return True

    def weight_source(self) -> WeightSource:
        """Where its pretrained weights come from; cheap (no download, no network built)."""
        return NO_PRETRAINED

    def eval_transform(self, preprocessing: Preprocessing) -> Callable[[Any], Any]:
        """Decoded RGB ``PIL.Image`` -> input tensor, as ``preprocessing`` declares."""
        raise FidBenchError(
            f"{self.name}: no frozen-feature preprocessing; fine-tune it (classifier=finetune)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class PretrainedBackbone(Backbone):
    """A family with pretrained weights: hub weights (``pretrained``), a local file (``weights``) or random."""

    def __init__(
        self,
        pretrained: bool,
        weights: str | None,
        image_size: int | None,
        layers: Any = None,
        pool: Any = "cls",
        resize: str | None = None,
        crops: int = 1,
        crop_mode: str = "grid",
        crop_seed: int = 0,
    ) -> None:
        self.pretrained = bool(pretrained)
        self.weights = str(weights) if weights else None
        self.image_size = check_image_size(image_size, type(self).__name__)
        # frozen features from transformer blocks (fid_bench.backbones.layers); fine-tuning ignores them
        self.layers = layer_spec(layers)
        self.pools = pool_spec(pool)
        # frozen features at native resolution (fid_bench.backbones.native_crops); fine-tuning refuses it
        self.native = native_spec(resize, crops, crop_mode, crop_seed)

    def layer_fields(self) -> dict[str, Any]:
        """The ``layers``/``pool`` identity fields: none without layers, so older identities stay."""
        return {"layers": self.layers, "pool": self.pools} if self.layers is not None else {}

    def native_fields(self) -> dict[str, Any]:
        """The ``resize=native`` identity fields (crops, mode, seed): none in the model's own
        preprocessing, so the identities of those features stay what they were."""
        native = getattr(self, "native", None)  # a backbone pickled before the option existed: none
        return {"resize": "native", **native} if native else {}

    @property
    def random_init(self) -> bool:
        return not (self.pretrained or self.weights)

    def weight_source(self) -> WeightSource:
        """A local file or random weights: nothing to fetch; else the family's ``pretrained_source()``."""
        if self.weights or not self.pretrained:
            return LOCAL_OR_RANDOM
        return self.pretrained_source()

    def pretrained_source(self) -> WeightSource:
        """Where the family's pretrained weights come from (a hub repo, a known file)."""
        return NO_PRETRAINED

    def weights_identity(self, default: dict[str, Any], init_seed: int) -> dict[str, Any]:
        """A local file by its content, hub weights by ``default``, random weights by seed and torch."""
        if self.weights:
            return {"file_sha256": file_sha256(check_weights_file(self.weights))}
        if self.pretrained:
            return default
        # a random network is only reproducible with its seed and the torch that drew it
        return {"random_init_seed": int(init_seed), "torch": lib_version("torch")}
