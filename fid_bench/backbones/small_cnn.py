"""Trainable backbones for the fine-tuning track (the ``model.network`` config key builds one).

Every backbone is an ``nn.Module`` that maps a normalised image batch ``[B, 3, S, S]`` to features
``[B, num_features]`` and says how its input must be prepared:

``num_features``  width of the feature vector (the binary head sits on top, see ``module.py``)
``input_size``    the square side ``S`` it is trained and evaluated at
``mean``, ``std`` per-channel normalisation of ``[0, 1]`` pixels

``SmallCNN`` is defined here and trained from scratch; ``timm_network`` and ``open_clip_network``
wrap any timm model or an open_clip image tower, with pretrained weights resolved by
``fid_bench.features.weights`` (hub, local cache or ``model.weights=PATH``; one clear error offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fid_bench.errors import FidBenchError

#: the size SmallCNN is built for when the data set does not ask for another one (CIFAKE's 32 px)
SMALL_CNN_SIZE = 32


class Backbone(nn.Module):
    """A feature extractor plus the preprocessing it expects."""

    num_features: int
    input_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def preprocessing(self) -> dict[str, Any]:
        """What the data pipeline needs to feed this network (also stored in the predictor)."""
        return {"image_size": int(self.input_size), "mean": list(self.mean), "std": list(self.std)}


class SmallCNN(Backbone):
    """A compact VGG-style CNN for small images, trained from scratch.

    Stages of ``blocks`` 3x3 conv-BN-ReLU layers; 2x2 max-pooling between stages only, so the first
    stage sees full-resolution pixels (generator artefacts are high-frequency and an early stride
    would average them away). Global average and max pooling are concatenated: the max keeps a
    strong local artefact that an average over the image would dilute.
    """

    def __init__(
        self,
        image_size: int | None = None,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1 or int(blocks) < 1:
            raise FidBenchError(f"SmallCNN: widths must be positive and blocks >= 1, got {widths}, {blocks}")
        self.input_size = int(image_size or SMALL_CNN_SIZE)
        if self.input_size < 2 ** (len(widths) - 1):
            raise FidBenchError(
                f"SmallCNN: image_size={self.input_size} is too small for {len(widths)} stages "
                f"(needs >= {2 ** (len(widths) - 1)})"
            )
        layers: list[nn.Module] = []
        in_ch = 3
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(int(blocks)):
                layers += [
                    nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(float(dropout))
        self.num_features = 2 * in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.dropout(pooled)


class TimmBackbone(Backbone):
    """Any timm model without its classifier (``num_classes=0``)."""

    def __init__(self, model: nn.Module, input_size: int) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        self.input_size = int(input_size)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def timm_network(
    model_name: str,
    pretrained: bool = False,
    weights: str | None = None,
    image_size: int | None = None,
    **kwargs: Any,
) -> TimmBackbone:
    """Build timm ``model_name`` as a backbone; any timm name works (``model.name=...``).

    ``image_size`` (``data.image_size``) overrides the model's native input size; models with a
    fixed token grid (ViTs) are built for that size, convolutional ones simply take it.
    """
    import timm

    if not timm.is_model(model_name):
        raise FidBenchError(
            f"model.name={model_name!r} is not a timm model (see timm.list_models(); e.g. resnet50)"
        )
    create_kwargs: dict[str, Any] = {"num_classes": 0, **kwargs}
    if image_size:
        create_kwargs["img_size"] = int(image_size)
    try:
        model = _create_timm(model_name, pretrained, weights, create_kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        # convolutional models take any input size and have no img_size argument
        del create_kwargs["img_size"]
        model = _create_timm(model_name, pretrained, weights, create_kwargs)
    size = int(image_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    return TimmBackbone(model, size)


def _create_timm(model_name: str, pretrained: bool, weights: str | None, kwargs: dict[str, Any]) -> nn.Module:
    # the shared weight policy: model.weights=PATH, hub through its local cache, one clear error offline
    from fid_bench.features import weights as weight_policy

    return weight_policy.create_timm_model(model_name, pretrained=bool(pretrained), weights=weights, **kwargs)


class OpenClipBackbone(Backbone):
    """The image tower of an open_clip model; features are its projected embedding."""

    def __init__(self, visual: nn.Module, input_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.visual = visual
        self.num_features = int(visual.output_dim)
        self.input_size = int(input_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def open_clip_network(
    arch: str,
    pretrained_tag: str | None = None,
    pretrained: bool = False,
    weights: str | None = None,
    image_size: int | None = None,
) -> OpenClipBackbone:
    """Build the image tower of open_clip ``arch`` as a trainable backbone."""
    import open_clip

    if arch not in open_clip.list_models():
        raise FidBenchError(
            f"model.name={arch!r} is not an open_clip architecture (see open_clip.list_models())"
        )
    from fid_bench.features import weights as weight_policy

    kwargs: dict[str, Any] = {}
    if image_size:
        kwargs["force_image_size"] = int(image_size)
    model = weight_policy.create_open_clip_model(
        arch, pretrained_tag, pretrained=bool(pretrained), weights=weights, **kwargs
    )
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return OpenClipBackbone(visual, size, mean, std)
