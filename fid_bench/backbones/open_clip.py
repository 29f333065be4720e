"""The image tower of an open_clip CLIP model as a backbone (the text tower is dropped after loading).

Features are the tower's projected embedding (``encode_image`` without normalisation).
Preprocessing is the architecture's and tag's (``visual.preprocess_cfg``: size, mean/std,
interpolation, resize mode) and open_clip's eval transform of it, the one
``open_clip.create_model_and_transforms`` returns. ``image_size`` other than the native size works
only where open_clip can adapt the tower; otherwise building fails with a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fid_bench.backbones.base import Built, Preprocessing, PretrainedBackbone, lib_version
from fid_bench.backbones.weights import create_open_clip_model
from fid_bench.errors import FidBenchError


class OpenClipBackbone(PretrainedBackbone):
    """open_clip architecture ``arch`` with the weights of ``pretrained_tag`` (or a file, or random)."""

    cache_id = "fid_bench.features.encoders.OpenClipEncoder"

    def __init__(
        self,
        arch: str,
        pretrained_tag: str | None = None,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        layers: Any = None,
        pool: Any = "cls",
    ) -> None:
        if not isinstance(arch, str) or not arch:
            raise FidBenchError(f"OpenClipBackbone: arch must be an open_clip architecture, got {arch!r}")
        self.arch = arch
        self.pretrained_tag = pretrained_tag or None
        super().__init__(pretrained, weights, image_size, layers, pool)

    @property
    def name(self) -> str:
        tag = "file" if self.weights else (self.pretrained_tag if self.pretrained else "random")
        return f"open_clip:{self.arch}/{tag}"

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        return {
            "arch": self.arch,
            # an open_clip tag names one fixed checkpoint and its preprocessing
            "weights": self.weights_identity({"tag": self.pretrained_tag}, init_seed),
            "image_size": self.image_size,
            "libs": {"open_clip": lib_version("open_clip_torch"), "torchvision": lib_version("torchvision")},
            **self.layer_fields(),
        }

    def build(self) -> Built:
        model, info = create_open_clip_model(
            self.arch,
            self.pretrained_tag,
            pretrained=self.pretrained,
            weights=self.weights,
            force_image_size=self.image_size,
        )
        visual = model.visual
        del model  # the text tower is never used: free it
        cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", visual.image_size)
        height, width = (size, size) if isinstance(size, int) else size
        preprocessing = Preprocessing(
            size=(int(height), int(width)),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
            interpolation=str(cfg.get("interpolation", "bicubic")),
            resize_mode=str(cfg.get("resize_mode", "shortest")),
        )
        return Built(visual, preprocessing, int(visual.output_dim), {"weights": info})

    def eval_transform(self, preprocessing: Preprocessing) -> Callable[[Any], Any]:
        from open_clip.transform import image_transform

        return image_transform(
            image_size=preprocessing.size,
            is_train=False,
            mean=preprocessing.mean,
            std=preprocessing.std,
            resize_mode=preprocessing.resize_mode,
            interpolation=preprocessing.interpolation,
        )
