"""The image tower of an open_clip CLIP model as a backbone (the text tower is dropped after loading).

Features are the tower's projected embedding (``encode_image`` without normalisation).
Preprocessing is the architecture's and tag's (``visual.preprocess_cfg``: size, mean/std,
interpolation, resize mode) and open_clip's eval transform of it, the one
``open_clip.create_model_and_transforms`` returns. ``image_size`` other than the native size works
only where open_clip can adapt the tower; otherwise building fails with a one-line error.
Pretrained weights are the tag's Hugging Face hub copy (``open_clip_hub_weights``, resolved through
the local cache; see ``fid_bench.backbones.weights``) or a local file (a full CLIP or the image
tower alone), loaded into the network open_clip builds without weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fid_bench.backbones.base import Built, Preprocessing, PretrainedBackbone, lib_version
from fid_bench.backbones.weights import HubWeights, check_weights_file, load_into, load_state_dict
from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class OpenClipBackbone(PretrainedBackbone):
    """open_clip architecture ``arch`` with the weights of ``pretrained_tag`` (or a file, or random).

    ``resize=native`` with ``crops``, ``crop_mode``, ``crop_seed``: frozen features of windows of the
    original pixels (``fid_bench.backbones.native_crops``) instead of open_clip's eval transform."""

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
        resize: str | None = None,
        crops: int = 1,
        crop_mode: str = "grid",
        crop_seed: int = 0,
    ) -> None:
        if not isinstance(arch, str) or not arch:
            raise FidBenchError(f"OpenClipBackbone: arch must be an open_clip architecture, got {arch!r}")
        self.arch = arch
        self.pretrained_tag = pretrained_tag or None
        super().__init__(pretrained, weights, image_size, layers, pool, resize, crops, crop_mode, crop_seed)

    @property
    def name(self) -> str:
        tag = "file" if self.weights else (self.pretrained_tag if self.pretrained else "random")
        return f"open_clip:{self.arch}/{tag}"

    def pretrained_source(self) -> HubWeights:
        return open_clip_hub_weights(self.arch, self.pretrained_tag)

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        return {
            "arch": self.arch,
            # an open_clip tag names one fixed checkpoint and its preprocessing
            "weights": self.weights_identity({"tag": self.pretrained_tag}, init_seed),
            "image_size": self.image_size,
            "libs": {"open_clip": lib_version("open_clip_torch"), "torchvision": lib_version("torchvision")},
            **self.layer_fields(),
            **self.native_fields(),
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


# --------------------------------------------------------------------------- weights
def open_clip_tag_cfg(arch: str, pretrained_tag: str | None) -> dict[str, Any]:
    """open_clip's registry entry for (arch, tag): hub location plus preprocessing and QuickGELU."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not pretrained_tag:
        raise FidBenchError(
            f"model.pretrained_tag is needed for pretrained {arch} weights; one of {', '.join(tags) or 'none'}"
        )
    cfg = open_clip.get_pretrained_cfg(arch, pretrained_tag)
    if not cfg:
        raise FidBenchError(
            f"model.pretrained_tag={pretrained_tag!r} is not an open_clip tag of {arch}; "
            f"one of {', '.join(tags) or 'none'}"
        )
    return dict(cfg)


def open_clip_hub_source(arch: str, pretrained_tag: str | None) -> tuple[str, list[str], dict[str, Any]]:
    """Hub repo, candidate file names and registry entry of an open_clip (arch, tag)."""
    cfg = open_clip_tag_cfg(arch, pretrained_tag)
    loc = cfg.get("hf_hub") or ""
    if not loc:
        raise FidBenchError(
            f"open_clip {arch}/{pretrained_tag} has no Hugging Face hub copy; download it yourself and "
            "pass model.weights=/path/to/checkpoint"
        )
    repo_id, filename = os.path.split(loc.rstrip("/")) if not loc.endswith("/") else (loc.rstrip("/"), "")
    if filename:
        names = [filename]
    else:
        names = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return repo_id, names, cfg


def open_clip_hub_weights(arch: str, pretrained_tag: str | None) -> HubWeights:
    """The declaration of the hub weights of an open_clip (arch, tag)."""
    repo_id, names, _ = open_clip_hub_source(arch, pretrained_tag)
    return HubWeights(repo_id, tuple(names), f"{arch}/{pretrained_tag}")


def check_open_clip_arch(arch: str) -> None:
    """A built-in open_clip architecture, not a hub or folder location: anything else is one line."""
    import open_clip

    if arch.startswith(("hf-hub:", "local-dir:")):
        raise FidBenchError(
            f"model.name={arch!r}: give a built-in open_clip architecture with model.pretrained_tag, "
            "or pass model.weights=/path/to/checkpoint"
        )
    if arch not in open_clip.list_models():
        raise FidBenchError(
            f"model.name={arch!r} is not an open_clip architecture (see open_clip.list_models())"
        )


def create_open_clip_model(
    arch: str,
    pretrained_tag: str | None = None,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    force_image_size: int | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build an open_clip model with the project's weight policy (``fid_bench.backbones.weights``);
    returns (model, info).

    ``model.visual.preprocess_cfg`` holds the tag's preprocessing (mean, std, interpolation and
    resize mode), the one ``open_clip.create_model_and_transforms`` would make its eval transform of.
    ``force_image_size`` other than the native size is accepted only where open_clip can adapt
    the tower (ViTs, on a multiple of the patch size; timm towers with ``set_input_size``).
    """
    import open_clip

    check_open_clip_arch(arch)
    info: dict[str, Any] = {"arch": arch}
    source: Path | None = None
    tag_cfg: dict[str, Any] = {}
    if weights:
        source = check_weights_file(weights)
        info["weights_file"] = str(source)
    elif pretrained:
        repo_id, names, tag_cfg = open_clip_hub_source(arch, pretrained_tag)
        hf = HubWeights(repo_id, tuple(names), f"{arch}/{pretrained_tag}").resolve()
        source = hf.path
        info.update(pretrained_tag=pretrained_tag, hf_hub=repo_id, hf_hub_revision=hf.revision)
    if force_image_size:
        _check_open_clip_size(arch, int(force_image_size))
    preprocess = {k: tag_cfg.get(k) for k in ("mean", "std", "interpolation", "resize_mode")}
    with _quiet_open_clip():
        model = open_clip.create_model(
            arch,
            pretrained=None,
            force_image_size=int(force_image_size) if force_image_size else None,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg={k: v for k, v in preprocess.items() if v is not None},
            pretrained_text=False,
            pretrained_image=False,
            **kwargs,
        )
    if source is not None:
        _load_open_clip(
            model, source, what=f"model.weights={source}" if weights else f"{arch}/{pretrained_tag}"
        )
    info["preprocess"] = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    return model, info


def _check_open_clip_size(arch: str, size: int) -> None:
    import open_clip

    vision = (open_clip.get_model_config(arch) or {}).get("vision_cfg", {})
    native = vision.get("image_size", 224)
    native = native[0] if isinstance(native, (list, tuple)) else native
    if size == native:
        return
    if "timm_model_name" in vision:
        return  # adapted by set_input_size after building; timm itself rejects what it cannot do
    if isinstance(vision.get("layers"), (list, tuple)):
        raise FidBenchError(
            f"data.image_size={size}: open_clip {arch} (a ResNet tower with attention pooling) only "
            f"works at its native {native} px; set data.image_size=null"
        )
    patch = int(vision.get("patch_size", 16))
    if size % patch:
        raise FidBenchError(
            f"data.image_size={size}: open_clip {arch} needs a multiple of its patch size {patch} "
            f"(native {native}); e.g. {max(patch, size // patch * patch)}"
        )


def _load_open_clip(model: nn.Module, path: Path, *, what: str) -> None:
    """Load a full CLIP or an image-tower-only checkpoint; only the image tower must be complete."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import resize_pos_embed

    sd = load_state_dict(path)
    if not any(k.startswith("visual.") for k in sd):
        sd = {f"visual.{k}": v for k, v in sd.items()}  # an image-tower-only checkpoint
    try:
        sd = convert_state_dict(model, sd)
    except Exception:  # noqa: BLE001 - third-party formats that do not apply leave the dict as is
        log.debug("open_clip convert_state_dict did not apply", exc_info=True)
    resize_pos_embed(sd, model)
    if (
        "logit_scale" in sd
        and hasattr(model, "logit_scale")
        and sd["logit_scale"].ndim != model.logit_scale.ndim
    ):
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    own = model.state_dict()
    # the text tower is never used for image features: only the image tower has to be complete
    text_keys = tuple(k for k in own if not k.startswith("visual.")) + ("logit_",)
    load_into(model, sd, what=what, ignore_missing=text_keys, ignore_unexpected=text_keys)


class _quiet_open_clip:
    """open_clip logs a warning for every randomly initialised model; we load weights right after."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger()
        self._level = self._logger.level
        if self._level < logging.ERROR:
            self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)
