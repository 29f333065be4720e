"""Behaviour the suite once let plausible bugs through on: the direction of the operating-point and
calibration metrics, where a score on a calibration bin edge goes, and that every preprocessing
setting of every encoder (and of ``data.align``) is part of the feature-cache key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fid_bench.evaluation import metric_registry
from fid_bench.evaluation.metrics import compute_metrics, expected_calibration_error, reliability_bins
from tests.conftest import CONF_DIR

# ----------------------------------------------------------------------------- directions
LOWER_IS_BETTER = ("eer", "ece", "brier", "log_loss")
HIGHER_IS_BETTER = ("tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "roc_auc", "average_precision")


@pytest.mark.parametrize("prefix", ["", "shoes/", "jpeg75/", "val_", "group/sd14/"])
def test_operating_point_and_calibration_metrics_rank_the_right_way(prefix: str) -> None:
    for name in LOWER_IS_BETTER:
        assert metric_registry.direction(prefix + name) == "minimize", prefix + name
    for name in HIGHER_IS_BETTER:
        assert metric_registry.direction(prefix + name) == "maximize", prefix + name


def test_the_registered_direction_prefers_the_better_detector() -> None:
    """A detector that separates the classes well against one that barely does: for every metric the
    registry directs, the good one must be the one the ranking puts first."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 400)
    good = np.clip(np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.1, y.size), 0, 1)
    # overconfident and mostly guessing: right 55 % of the time, always 0.1 or 0.9
    right = rng.random(y.size) < 0.55
    poor = np.where(right == (y == 1), 0.9, 0.1) + rng.normal(0, 0.01, y.size)
    g, p = compute_metrics(y, good, calibration_bins=10), compute_metrics(y, poor, calibration_bins=10)
    for name in (*LOWER_IS_BETTER, *HIGHER_IS_BETTER):
        assert g[name] != p[name], name
        good_first = g[name] < p[name] if metric_registry.lower_is_better(name) else g[name] > p[name]
        assert good_first, (name, g[name], p[name])


# ----------------------------------------------------------------------------- calibration bins
@pytest.mark.parametrize(
    ("labels", "scores", "bins", "ece"),
    [
        # a score on an inner edge belongs to the bin above it: [0.5, 1] holds 0.5 and 0.75,
        # mean 0.625 against a positive rate of 0.5 (0.375 if 0.5 fell into [0, 0.5))
        ([0, 1], [0.5, 0.75], 2, 0.125),
        # 0.49 alone in [0, 0.5): gap 0.49; 0.5 alone in [0.5, 1]: gap 0.5 (0.005 if merged)
        ([0, 1], [0.49, 0.5], 2, (0.49 + 0.5) / 2),
        # four bins: 0.25 opens bin 1 (gap 0.25), 0.75 and 1.0 share the last (mean 0.875, rate 1)
        ([0, 1, 1], [0.25, 0.75, 1.0], 4, (0.25 + 2 * 0.125) / 3),
        # 0.0 and 1.0 in one bin: mean 0.5 against a rate of 0.5
        ([1, 0], [0.0, 1.0], 1, 0.0),
        # three bins, edges at 1/3 and 2/3: 1/3 goes up, just under 2/3 stays
        ([1, 0, 1], [1 / 3, 0.6, 0.7], 3, (abs(0.5 - (1 / 3 + 0.6) / 2) * 2 + 0.3) / 3),
    ],
)
def test_ece_hand_computed_on_bin_edges(labels: list, scores: list, bins: int, ece: float) -> None:
    assert expected_calibration_error(labels, scores, bins) == pytest.approx(ece, abs=1e-12)


def test_bin_edges_are_closed_below_and_the_last_bin_holds_one() -> None:
    table = reliability_bins([0, 0, 0, 0, 0], [0.0, 0.25, 0.5, 0.75, 1.0], 4)
    assert table["n"].tolist() == [1, 1, 1, 2]
    assert table["low"].tolist() == [0.0, 0.25, 0.5, 0.75] and table["high"].tolist() == [
        0.25,
        0.5,
        0.75,
        1.0,
    ]


# ----------------------------------------------------------------------------- cache keys
#: backbone settings that change how fast features come, never which: they must NOT change the key
#: (but ``batch_size`` of a graph that quantises activations at run time: checked as a setting)
RUNTIME_ONLY = {
    "providers",
    "threads",
    "batch_size",
    "weights_dir",
    "allow_spinning",
    "graph_optimization",
    # the same float32 operations inside the session (tests/test_onnx_speed.py: max abs difference 0)
    "fuse_normalise",
}
#: settings that only act beside others (pooling of chosen blocks, crops of native-resolution
#: scoring): both sides of the comparison carry these, so the setting itself is what differs
NEEDS = {
    "layers": {"token": None, "output": None, "expose": None},  # blocks replace a chosen output
    "pool": {"layers": "all", "token": None, "output": None, "expose": None},
    "crops": {"resize": "native"},
    "crop_mode": {"resize": "native", "crops": 2},
    "crop_seed": {"resize": "native", "crops": 2, "crop_mode": "random"},
}


def _backbone_node(model: str, **overrides: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    extra = [f"{k}={v}" for k, v in overrides.items()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "classifier=logreg", *extra])
    return OmegaConf.to_container(cfg.model.backbone, resolve=True)


def _identity(node: dict[str, Any], align: Any = None) -> str:
    from fid_bench.features.aligned import with_alignment
    from fid_bench.features.concat import expand_members
    from fid_bench.features.encoders import build_encoder

    return build_encoder(with_alignment(expand_members(dict(node)), align)).identity


def _other_value(field: str, value: Any, files: dict[str, Path]) -> Any:
    """A valid value of ``field`` other than ``value``; a field this does not know fails the test,
    so a new setting cannot join the encoders without being checked here."""
    named = {
        # not 64 (the spectrum's default tile); a multiple of both 14 and 16 px patches
        "image_size": 112 if value != 112 else 224,
        "default_size": 112 if value != 112 else 224,
        "arch": "ViT-B-16",
        "model_name": "resnet18",
        "pretrained_tag": "laion2b_s34b_b79k",
        "weights": str(files["weights"]),
        "path": str(files["onnx_other"]),
        "input_name": "pixel_values",
        "output": "logits",
        "token": "cls" if value != "cls" else "mean",
        "resize": "native" if value is None else ("squash" if value != "squash" else "shortest"),
        "interpolation": "bilinear" if value != "bilinear" else "bicubic",
        "members": ["spectrum", "clip_vit_l14"],
        "layers": "all" if value != "all" else [0],
        "pool": "mean" if value != "mean" else "cls",
        "expose": ["/backbone/other_output"],
        "crop_mode": "random" if value != "random" else "grid",
        "source": "efficientnet_lite2" if value != "efficientnet_lite2" else "efficientnet_lite1",
        # runtime-only settings: any other value
        "providers": ["cpu"],
        "threads": 1,
        "batch_size": 7,
        "weights_dir": str(files["weights"].parent / "elsewhere"),
        "allow_spinning": True,
        "graph_optimization": "basic" if value != "basic" else "all",
        "quantise": "dynamic" if value != "dynamic" else None,
    }
    if field in named:
        return named[field]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.9
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return [value[0] * 0.9 + 0.01, *value[1:]]
    pytest.fail(f"no other value known for encoder setting {field!r} ({value!r}): add one to _other_value")


def _models() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", _models())
def test_every_encoder_setting_is_part_of_the_cache_key(model: str, tmp_path: Path) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.features.encoders import build_encoder

    files = {"weights": tmp_path / "w.pth", "onnx": tmp_path / "a.onnx", "onnx_other": tmp_path / "b.onnx"}
    files["weights"].write_bytes(b"checkpoint bytes")
    # two different (float) graphs: a path's identity reads the graph (does it quantise at run time?)
    from tests.test_onnx import tiny_graph

    tiny_graph(files["onnx"])
    tiny_graph(files["onnx_other"], outputs=("hidden", "logits", "feat"))
    overrides = {"model.path": str(files["onnx"]), "model.file": "null"} if model == "onnx" else {}
    node = _backbone_node(model, **overrides)
    try:
        _identity(node)
    except FidBenchError as err:
        assert "no frozen encoder" in str(err)  # a network only fine-tuned has no cached features
        return
    fields = [k for k in node if k != "_target_"]
    assert fields, model
    for field in fields:
        if model == "clip_vit_b16_int8" and field == "path":
            continue  # a known file: path and file name the same pinned digest (checked below)
        start = {**node, **{k: v for k, v in NEEDS.get(field, {}).items() if k in node}}
        if field == "file":  # another file by name: here, the file given by path instead
            changed = {**start, "file": None, "path": str(files["onnx_other"])}
        else:
            changed = {**start, field: _other_value(field, start[field], files)}
        try:
            before, after = _identity(start), _identity(changed)
        except FidBenchError as err:
            # block outputs exist in transformers only: a CNN refuses model.layers in one line
            assert field in ("layers", "pool") and "model.layers" in str(err), f"{model}.{field}: {err}"
            continue
        if field == "batch_size" and build_encoder(dict(start)).quantises_dynamically():
            # activations quantised at run time over the batch: the batch changes the features
            assert after != before, f"{model}: batch_size of a dynamically quantised graph kept the key"
        elif field in RUNTIME_ONLY:
            assert after == before, f"{model}: {field} is runtime-only but changed the key"
        else:
            assert after != before, f"{model}: changing {field} keeps the same feature-cache key"


def test_every_alignment_setting_is_part_of_the_cache_keys() -> None:
    from fid_bench.data.decode import Alignment
    from fid_bench.finetune.decoded import cache_key

    node = _backbone_node("spectrum")
    base_align = Alignment(format="jpeg", quality=90, size=None)
    others = {"format": "webp", "quality": 80, "size": 64}
    base_id, base_key = _identity(node, base_align), cache_key(["a" * 40], 32, base_align.as_dict())
    assert base_id != _identity(node)  # aligned features never mix with plain ones
    for field in dataclasses.fields(Alignment):
        assert field.name in others, f"no other value for data.align.{field.name}: add one"
        changed = dataclasses.replace(base_align, **{field.name: others[field.name]})
        assert _identity(node, changed) != base_id, field.name
        assert cache_key(["a" * 40], 32, changed.as_dict()) != base_key, field.name
