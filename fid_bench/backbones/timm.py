"""Any timm model as a backbone: its classifier removed (``num_classes=0``: pooled features).

Preprocessing is the model's own: timm's data config resolved for the built model (input size,
interpolation, mean/std, crop fraction and mode) and timm's eval transform of it. ``image_size``
overrides the input size: models with a fixed token grid (ViTs) are built for it (``img_size``;
position embeddings of pretrained weights are resampled), convolutional ones just receive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fid_bench.backbones.base import Built, Preprocessing, PretrainedBackbone, lib_version
from fid_bench.backbones.weights import create_timm_model
from fid_bench.errors import FidBenchError

# timm's crop modes in the shared vocabulary of ``Preprocessing.resize_mode``
_RESIZE_MODE = {"center": "shortest", "squash": "squash", "border": "border"}
_CROP_MODE = {v: k for k, v in _RESIZE_MODE.items()}


class TimmBackbone(PretrainedBackbone):
    """timm ``model_name`` (any name ``timm.list_models()`` knows; ``model.name=...``).

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    cache_id = "fid_bench.features.encoders.TimmEncoder"

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        layers: Any = None,
        pool: Any = "cls",
        **model_kwargs: Any,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise FidBenchError(f"TimmBackbone: model_name must be a timm model name, got {model_name!r}")
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs)
        super().__init__(pretrained, weights, image_size, layers, pool)

    @property
    def name(self) -> str:
        return f"timm:{self.model_name}"

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model_name,
            # timm pins each model's default tag (one hub repo) and preprocessing per release
            "weights": self.weights_identity({"hub": "timm-default-pretrained"}, init_seed),
            "image_size": self.image_size,
            "libs": {"timm": lib_version("timm"), "torchvision": lib_version("torchvision")},
        }
        if self.model_kwargs:
            fields["model_kwargs"] = self.model_kwargs
        return {**fields, **self.layer_fields()}

    def build(self) -> Built:
        from timm.data import resolve_data_config

        kwargs: dict[str, Any] = {"num_classes": 0, **self.model_kwargs}
        if self.image_size:
            kwargs["img_size"] = self.image_size
        try:
            model = create_timm_model(
                self.model_name, pretrained=self.pretrained, weights=self.weights, **kwargs
            )
        except TypeError as err:
            if "img_size" not in str(err):
                raise
            del kwargs["img_size"]  # a CNN: any input size works, the preprocessing sets it
            model = create_timm_model(
                self.model_name, pretrained=self.pretrained, weights=self.weights, **kwargs
            )
        args = {"input_size": (3, self.image_size, self.image_size)} if self.image_size else {}
        data_cfg = resolve_data_config(args, model=model)
        preprocessing = Preprocessing(
            size=(int(data_cfg["input_size"][1]), int(data_cfg["input_size"][2])),
            mean=tuple(float(v) for v in data_cfg["mean"]),
            std=tuple(float(v) for v in data_cfg["std"]),
            interpolation=str(data_cfg["interpolation"]),
            resize_mode=_RESIZE_MODE[data_cfg.get("crop_mode") or "center"],
            crop_pct=float(data_cfg["crop_pct"]),
        )
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        weights = {k: cfg.get(k) for k in ("hf_hub_id", "tag", "file", "hf_hub_revision") if cfg.get(k)}
        info = {
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
            # a random network's weights are named by the encoder's seed, not by timm's default tag
            "weights": {} if self.random_init else weights,
        }
        return Built(model, preprocessing, int(model.num_features), info)

    def eval_transform(self, preprocessing: Preprocessing) -> Callable[[Any], Any]:
        from timm.data import create_transform

        return create_transform(
            input_size=(3, *preprocessing.size),
            interpolation=preprocessing.interpolation,
            mean=preprocessing.mean,
            std=preprocessing.std,
            crop_pct=preprocessing.crop_pct,
            crop_mode=_CROP_MODE[preprocessing.resize_mode],
            is_training=False,
        )
