"""Pretrained-weight resolution: the Hugging Face hub (through its local cache) or a local checkpoint.

One policy for every backbone the project builds, frozen (embedding track) or fine-tuned:

* ``weights=/path/file`` wins: a local checkpoint (``.safetensors``, or a ``.pth``/``.pt``/``.bin``
  state dict, possibly nested under ``state_dict``/``model``/``state_dict_ema``/``model_ema`` and
  with ``module.``/``model.``/``_orig_mod.`` prefixes) is loaded into the freshly built network;
  missing keys are an error, unexpected ones a warning (both listed).
* ``pretrained=true`` resolves the model's hub files (timm: ``timm/<model>.<tag>``; open_clip:
  the tag's ``hf_hub`` entry) in the local Hugging Face cache first (``HF_HUB_CACHE``, else
  ``HF_HOME/hub``, read when called). Only when a file is not cached and ``HF_HUB_OFFLINE`` is not
  set is the hub asked, with a short timeout. The resolved file is then handed to timm/open_clip
  as a local file, so neither library goes to the network on its own.
* Whatever fails ends in ONE ``FidBenchError`` that names the weights and both ways out.

The feature-cache fast path imports this module (a local checkpoint's sha256 is part of a cache
key) but nothing heavy: torch, timm and open_clip are imported inside the functions that build networks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fid_bench.errors import FidBenchError, one_line

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

#: seconds to wait for the hub before giving up (only when a file is not cached and not offline)
HUB_TIMEOUT = 5.0
#: wrappers a training framework puts around the real state dict
NESTED_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema", "module")
#: prefixes left by DataParallel, Lightning modules and torch.compile
STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- local checkpoints
_DIGESTS: dict[tuple[str, int, int], str] = {}


def check_weights_file(weights: str | os.PathLike) -> Path:
    """The checkpoint path, expanded and checked; a one-line error when it is not a file."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FidBenchError(f"model.weights={weights}: no such checkpoint file")
    return path.resolve()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for the life of the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fp:
            for block in iter(lambda: fp.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint into a flat ``{name: tensor}`` dict (unwrapped, prefixes stripped)."""
    import torch

    path = check_weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
            except RuntimeError as err:
                if "TorchScript" not in str(err) and "zip" not in str(err):
                    raise
                # a TorchScript archive (e.g. OpenAI's original CLIP files) carries its weights inside
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
    except FidBenchError:
        raise
    except Exception as err:  # noqa: BLE001 - torch/safetensors raise many types on bad files
        raise FidBenchError(f"model.weights={path}: cannot read checkpoint ({one_line(err)})") from None
    return normalize_state_dict(obj, source=str(path))


def normalize_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Any]:
    """Unwrap ``{"state_dict": ...}``-style nesting and strip wrapper prefixes from every key."""
    import torch

    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise FidBenchError(f"{source}: not a state dict (found {type(obj).__name__})")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise FidBenchError(f"{source}: no tensors found in the checkpoint")
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_tensor_dict(obj: Mapping) -> bool:
    import torch

    return any(isinstance(v, torch.Tensor) for v in obj.values())


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    what: str,
    ignore_missing: Iterable[str] = (),
    ignore_unexpected: Iterable[str] = (),
) -> None:
    """Load ``state_dict`` into ``module``; missing keys -> one-line error, unexpected -> warning.

    Keys starting with a prefix in ``ignore_missing``/``ignore_unexpected`` are expected to be
    absent/extra (e.g. a classifier head that the encoder drops).
    """
    ignore_missing, ignore_unexpected = tuple(ignore_missing), tuple(ignore_unexpected)
    own = module.state_dict()
    shape_bad = [
        f"{k} {list(v.shape)} vs {list(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shape_bad:
        raise FidBenchError(
            f"{what}: {len(shape_bad)} tensor(s) have the wrong shape for this model, "
            f"e.g. {'; '.join(shape_bad[:3])} (is the checkpoint for another architecture or size?)"
        )
    result = module.load_state_dict(dict(state_dict), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(ignore_missing)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore_unexpected)]
    if missing:
        raise FidBenchError(
            f"{what}: {len(missing)} of {len(own)} weights are missing from the checkpoint, "
            f"e.g. {', '.join(missing[:4])} (is the checkpoint for another architecture?)"
        )
    if unexpected:
        log.warning(
            "%s: ignoring %d unexpected checkpoint key(s), e.g. %s",
            what,
            len(unexpected),
            ", ".join(unexpected[:4]),
        )


# --------------------------------------------------------------------------- the hub
def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the hub itself would pick it (read from the environment now)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (the hub library reads it only once, at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


_HUB_PROBES: dict[str, str | None] = {}


def hub_unreachable() -> str | None:
    """Why the hub endpoint cannot be reached (None when it answers at all): one request without
    retries, ``HUB_TIMEOUT`` seconds at most, remembered for the life of the process."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    endpoint = str(constants.ENDPOINT).rstrip("/")
    if endpoint not in _HUB_PROBES:
        try:
            with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_TIMEOUT):
                pass
            _HUB_PROBES[endpoint] = None
        except urllib.error.HTTPError:  # an HTTP answer, even an error status: the hub is there
            _HUB_PROBES[endpoint] = None
        except (OSError, ValueError) as err:  # URLError, timeouts, refused connections, bad URLs
            detail = getattr(err, "reason", None) or err
            _HUB_PROBES[endpoint] = f"{endpoint} unreachable: {' '.join(str(detail).split())[:120]}"
    return _HUB_PROBES[endpoint]


@dataclass(frozen=True)
class HubFile:
    """A weights file resolved from the hub cache: where it is and which commit it came from."""

    path: Path
    repo_id: str
    filename: str
    revision: str  # the commit hash of the cached snapshot


def hub_file(repo_id: str, filenames: Iterable[str], *, model: str, revision: str | None = None) -> HubFile:
    """The first of ``filenames`` in hub repo ``repo_id``: from the local cache, else downloaded.

    Raises the one offline ``FidBenchError`` (see ``missing_weights_error``) when no file can be had.
    """
    filenames = list(filenames)
    cache = hub_cache_dir()
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - a declared dependency
        raise missing_weights_error(
            model, repo_id, filenames[0], reason="huggingface_hub is not installed"
        ) from None
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache), revision=revision)
        if isinstance(found, str) and os.path.isfile(found):
            return HubFile(Path(found), repo_id, name, Path(found).parent.name)
    if hub_offline():
        raise missing_weights_error(model, repo_id, filenames[0], offline=True)
    down = hub_unreachable()
    if down is not None:
        # the hub client retries each file for about 25 s before giving up: ask once, briefly
        raise missing_weights_error(model, repo_id, filenames[0], reason=down)
    reasons = []
    for name in filenames:
        try:
            path = hf_hub_download(
                repo_id, name, revision=revision, cache_dir=str(cache), etag_timeout=HUB_TIMEOUT
            )
        except Exception as err:  # noqa: BLE001 - network/hub errors come in many types
            reasons.append(f"{name}: {one_line(err)[:160]}")
            continue
        return HubFile(Path(path), repo_id, name, Path(path).parent.name)
    raise missing_weights_error(model, repo_id, filenames[0], reason="; ".join(reasons))


def missing_weights_error(
    model: str, repo_id: str, filename: str, *, offline: bool = False, reason: str = ""
) -> FidBenchError:
    """The one error for weights that cannot be had: what is missing and both ways out."""
    why = " (HF_HUB_OFFLINE is set)" if offline else (f" ({reason})" if reason else "")
    return FidBenchError(
        f"pretrained weights for {model} (hf-hub:{repo_id}) are not in the local Hugging Face cache "
        f"({hub_cache_dir()}) and the hub cannot be reached{why}: download them once "
        f"(e.g. hf download {repo_id} {filename}) or pass model.weights=/path/to/checkpoint "
        f"(or model.pretrained=false to train from scratch)"
    )


# --------------------------------------------------------------------------- timm
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


def check_timm_name(model_name: str) -> None:
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
    """Build timm ``model_name`` with the project's weight policy (see the module docstring).

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
    repo_id, filenames = timm_hub_source(model_name)
    hf = hub_file(repo_id, filenames, model=model_name)
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


# --------------------------------------------------------------------------- open_clip
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


def check_open_clip_arch(arch: str) -> None:
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
    """Build an open_clip model with the project's weight policy; returns (model, info).

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
        hf = hub_file(repo_id, names, model=f"{arch}/{pretrained_tag}")
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
