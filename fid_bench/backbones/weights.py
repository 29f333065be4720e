"""Pretrained-weight resolution shared by every family: the Hugging Face hub (through its local cache)
or a local checkpoint, and the declaration of where a backbone's weights come from.

One policy for every backbone the project builds, frozen (features track) or fine-tuned:

* ``weights=/path/file`` wins: a local checkpoint (``.safetensors``, or a ``.pth``/``.pt``/``.bin``
  state dict, possibly nested under ``state_dict``/``model``/``state_dict_ema``/``model_ema`` and
  with ``module.``/``model.``/``_orig_mod.`` prefixes) is loaded into the freshly built network;
  missing keys are an error, unexpected ones a warning (both listed).
* ``pretrained=true`` resolves the hub files its family names (``HubWeights``: e.g. timm's
  ``timm/<model>.<tag>``, an open_clip tag's ``hf_hub`` entry) in the local Hugging Face cache first
  (``HF_HUB_CACHE``, else ``HF_HOME/hub``, read when called). Only when a file is not cached and
  ``HF_HUB_OFFLINE`` is not set is the hub asked, with a short timeout. The resolved file is then
  handed to the family's library as a local file, so no library goes to the network on its own.
* Whatever fails ends in ONE ``FidBenchError`` that names the weights and both ways out.

A family declares where its weights come from by ``weight_source()`` on its backbone class: a
``WeightSource`` that fetches them once (``fid-bench weights get``) and says whether an offline run
has them (the offline check before a job). The family specifics (timm, open_clip, packaged files)
live in the family modules; this module knows none of them.

The feature-cache fast path imports this module (a local checkpoint's sha256 is part of a cache
key) but nothing heavy: torch and the families' libraries are imported inside functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
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


def hub_cached(repo_id: str, filenames: Iterable[str]) -> bool:
    """Whether one of ``filenames`` of hub repo ``repo_id`` is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(hub_cache_dir()))
        if isinstance(found, str) and os.path.isfile(found):
            return True
    return False


# --------------------------------------------------------------------------- declarations
class WeightSource(ABC):
    """Where a backbone's pretrained weights come from, as its family declares (``weight_source()``)."""

    @abstractmethod
    def fetch(self, option: str) -> list[str]:
        """Put the weights where offline runs find them (``fid-bench weights get``); lines to print.

        ``option`` is the model config option asked for (named in the lines).
        """

    @abstractmethod
    def offline_problem(self, option: str, alternatives: str) -> str | None:
        """None when an offline run of model ``option`` has its weights; else one line saying how to get
        them (``alternatives``: the offline-ready options, for the message)."""


@dataclass(frozen=True)
class NoWeights(WeightSource):
    """Nothing to fetch: random weights, a local file, or a family without pretrained weights."""

    why: str

    def fetch(self, option: str) -> list[str]:
        return [f"model={option}: {self.why}"]

    def offline_problem(self, option: str, alternatives: str) -> str | None:
        return None


#: the declaration of a network built from random weights or from ``weights=FILE``
LOCAL_OR_RANDOM = NoWeights("nothing to fetch (no hub weights: pretrained=false or a local weights file)")
#: the declaration of a family without pretrained weights
NO_PRETRAINED = NoWeights("nothing to fetch (no pretrained weights)")


@dataclass(frozen=True)
class HubWeights(WeightSource):
    """Files in a Hugging Face hub repo: the first of ``filenames`` found is the weights of ``what``."""

    repo_id: str
    filenames: tuple[str, ...]
    what: str  # the model as its messages name it, e.g. resnet50 or ViT-B-32/openai

    def resolve(self) -> HubFile:
        """The file from the local cache, else downloaded (see ``hub_file``)."""
        return hub_file(self.repo_id, self.filenames, model=self.what)

    def fetch(self, option: str) -> list[str]:
        hf = self.resolve()
        return [
            f"{self.what}: {hf.path} (hf-hub:{self.repo_id} commit {hf.revision[:12]}); "
            "runs with HF_HUB_OFFLINE=1 find it"
        ]

    def offline_problem(self, option: str, alternatives: str) -> str | None:
        if hub_cached(self.repo_id, self.filenames):
            return None
        return (
            f"model={option}: its pretrained weights (hf-hub:{self.repo_id}) are not in the Hugging Face cache "
            f"({hub_cache_dir()}) and HF_HUB_OFFLINE is set: run `fid-bench weights get {option}` where the hub "
            f"is reachable, or pass model.weights=FILE; {alternatives}"
        )
