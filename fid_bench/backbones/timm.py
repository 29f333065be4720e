"""Any timm model as a backbone: its classifier removed (``num_classes=0``: pooled features).

Pretrained weights are timm's default tag of the model on the Hugging Face hub (``timm_hub_weights``,
resolved through the local cache; see ``fid_bench.backbones.weights``) or a local file.
Preprocessing is the model's own: timm's data config resolved for the built model (input size,
interpolation, mean/std, crop fraction and mode) and timm's eval transform of it. ``image_size``
overrides the input size: models with a fixed token grid (ViTs) are built for it (``img_size``;
position embeddings of pretrained weights are resampled), convolutional ones just receive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fid_bench.backbones.base import Built, Preprocessing, PretrainedBackbone, lib_version
from fid_bench.backbones.weights import (
    HubWeights,
    check_weights_file,
    load_into,
    load_state_dict,
)
from fid_bench.errors import FidBenchError, one_line

if TYPE_CHECKING:
    from torch import nn

# timm's crop modes in the shared vocabulary of ``Preprocessing.resize_mode``
_RESIZE_MODE = {"center": "shortest", "squash": "squash", "border": "border"}
_CROP_MODE = {v: k for k, v in _RESIZE_MODE.items()}


class TimmBackbone(PretrainedBackbone):
    """timm ``model_name`` (any name ``timm.list_models()`` knows; ``model.name=...``).

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``). ``resize=native`` with
    ``crops``, ``crop_mode``, ``crop_seed``: frozen features of windows of the original pixels
    (``fid_bench.backbones.native_crops``) instead of timm's eval transform.
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
        resize: str | None = None,
        crops: int = 1,
        crop_mode: str = "grid",
        crop_seed: int = 0,
        **model_kwargs: Any,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise FidBenchError(f"TimmBackbone: model_name must be a timm model name, got {model_name!r}")
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs)
        super().__init__(pretrained, weights, image_size, layers, pool, resize, crops, crop_mode, crop_seed)

    @property
    def name(self) -> str:
        return f"timm:{self.model_name}"

    def pretrained_source(self) -> HubWeights:
        return timm_hub_weights(self.model_name)

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
        return {**fields, **self.layer_fields(), **self.native_fields()}

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


# --------------------------------------------------------------------------- weights
def timm_hub_source(model_name: str) -> tuple[str, list[str]]:
    """The hub repo and candidate file names of timm ``model_name``'s default pretrained weights."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        raise FidBenchError(
            f"timm model {model_name!r} has no pretrained weights on the Hugging Face hub; "
            "pass model.weights=/path/to/checkpoint or model.pretrained=false"
        )
    if cfg.hf_hub_filename:
        return cfg.hf_hub_id, [cfg.hf_hub_filename]
    return cfg.hf_hub_id, ["model.safetensors", "pytorch_model.bin"]


def timm_hub_weights(model_name: str) -> HubWeights:
    """The declaration of timm ``model_name``'s default pretrained weights (a checked name)."""
    check_timm_name(model_name)
    repo_id, filenames = timm_hub_source(model_name)
    return HubWeights(repo_id, tuple(filenames), model_name)


def check_timm_name(model_name: str) -> None:
    """A timm model name, not a hub or folder location: anything else is a one-line error."""
    import timm

    if model_name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise FidBenchError(
            f"model.name={model_name!r}: give the timm model name (e.g. resnet50.a1_in1k) and let "
            "pretrained=true resolve its hub weights, or pass model.weights=/path/to/checkpoint"
        )
    if not timm.is_model(model_name):
        raise FidBenchError(f"model.name={model_name!r} is not a timm model (see timm.list_models())")


def create_timm_model(
    model_name: str, *, pretrained: bool = True, weights: str | None = None, **kwargs: Any
) -> nn.Module:
    """Build timm ``model_name`` with the project's weight policy (see ``fid_bench.backbones.weights``).

    ``kwargs`` go to ``timm.create_model`` (e.g. ``num_classes=0``, ``img_size=...``); a model that
    does not take one raises timm's own ``TypeError`` (callers retry without ``img_size``).
    """
    import timm

    check_timm_name(model_name)
    if weights:
        path = check_weights_file(weights)
        model = timm.create_model(model_name, pretrained=False, **kwargs)
        sd = load_state_dict(path)
        sd = _fit_timm_pos_embed(model, sd)
        head = _timm_classifier_prefixes(model)
        load_into(
            model,
            sd,
            what=f"model.weights={path}",
            # num_classes=0 drops the head: its weights are expected extras, not an error
            ignore_unexpected=head if kwargs.get("num_classes", None) == 0 else (),
        )
        model.pretrained_cfg = {**dict(model.pretrained_cfg), "file": str(path)}
        return model
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    hf = timm_hub_weights(model_name).resolve()
    try:
        model = timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay={"file": str(hf.path)}, **kwargs
        )
    except TypeError:
        raise
    except Exception as err:  # noqa: BLE001 - a bad cached file surfaces as one line
        raise FidBenchError(f"{model_name}: cannot load cached weights {hf.path}: {one_line(err)}") from None
    model.pretrained_cfg = {**dict(model.pretrained_cfg), "hf_hub_revision": hf.revision}
    return model


def _timm_classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    heads = (head,) if isinstance(head, str) else tuple(head)
    return tuple(f"{h}." for h in heads)


def _fit_timm_pos_embed(model: nn.Module, sd: dict[str, Any]) -> dict[str, Any]:
    """Resample a ViT checkpoint's position embedding when the model was built for another size."""
    own = getattr(model, "pos_embed", None)
    if own is None or "pos_embed" not in sd or tuple(sd["pos_embed"].shape) == tuple(own.shape):
        return sd
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
    grid = model.patch_embed.grid_size
    sd = dict(sd)
    sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=grid, num_prefix_tokens=prefix)
    return sd
