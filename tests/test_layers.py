"""``model.layers`` / ``model.pool``: transformer blocks found in exported ONNX graphs, the derived file's
identity, torch forward hooks agreeing with the ONNX outputs, and ``features.select`` re-using the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones.layers import layer_spec, pool_spec, pool_tokens, select_columns
from fid_bench.backbones.open_clip import OpenClipBackbone
from fid_bench.backbones.timm import TimmBackbone
from fid_bench.errors import FidBenchError
from fid_bench.features import onnx_export as export
from fid_bench.features.encoders import FrozenEncoder
from fid_bench.features.onnx import OnnxEncoder
from fid_bench.features.onnx_layers import block_outputs, derived_file, derived_path
from tests.test_encoders import tiny_clip  # noqa: F401 - the fixture registers tiny open_clip configs


def photos(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)) for _ in range(n)]


def timm_vit(**kw) -> FrozenEncoder:
    return FrozenEncoder(TimmBackbone("test_vit", pretrained=False, image_size=32, **kw))


def clip_vit(**kw) -> FrozenEncoder:
    return FrozenEncoder(OpenClipBackbone("TinyViT-test", pretrained=False, **kw))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_clip) -> dict[str, export.ExportReport]:  # noqa: F811
    """Tiny random timm and open_clip ViTs (and a CNN) exported as ``fid-bench export-onnx`` writes them."""
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for key, enc in (("timm", timm_vit()), ("open_clip", clip_vit())):
        out[key] = export.export_encoder(enc, folder / f"{key}.onnx", batch=2, exporter="torchscript")
    cnn = FrozenEncoder(TimmBackbone("test_resnet", pretrained=False))
    out["cnn"] = export.export_encoder(cnn, folder / "cnn.onnx", batch=2, exporter="torchscript")
    return out


def torch_blocks(enc: FrozenEncoder) -> int:
    from fid_bench.backbones.layers import find_torch_blocks

    enc.prepare("cpu")
    enc.load()
    return len(find_torch_blocks(enc._model)[0])


# ----------------------------------------------------------------------------- discovery
def test_blocks_are_found_in_exported_graphs_and_a_cnn_is_a_one_line_error(exported) -> None:
    import onnx

    for key, enc in (("timm", timm_vit()), ("open_clip", clip_vit())):
        names = block_outputs(onnx.load(str(exported[key].path)), key)
        assert len(names) == torch_blocks(enc), key
        assert len(set(names)) == len(names)
    with pytest.raises(FidBenchError, match="no residual stream") as err:
        block_outputs(onnx.load(str(exported["cnn"].path)), "cnn.onnx")
    assert "\n" not in str(err.value)


def test_blocks_are_found_without_node_names(exported, tmp_path: Path) -> None:
    """The exporter based on torch.export names nodes node_add_18 and so on: the structure still tells."""
    import onnx

    model = onnx.load(str(exported["timm"].path))
    expected = block_outputs(model)
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    assert block_outputs(model) == expected


# ----------------------------------------------------------------------------- torch hooks vs ONNX
@pytest.mark.parametrize("key", ["timm", "open_clip"])
def test_torch_hooks_and_onnx_outputs_give_the_same_features(exported, key: str, tmp_path: Path) -> None:
    import torch

    report = exported[key]
    imgs = photos()
    for layers, pool in (("all", "both"), ([0, -1], "mean")):
        enc = (timm_vit if key == "timm" else clip_vit)(layers=layers, pool=pool)
        enc.prepare("cpu")
        enc.load()
        ref = enc.encode(torch.stack([enc.transform(im) for im in imgs]))
        onnx_enc = OnnxEncoder(path=str(report.path), weights_dir=str(tmp_path), layers=layers, pool=pool,
                               **report.preprocess)  # fmt: skip
        onnx_enc.prepare("cpu")
        got = onnx_enc.encode(np.stack([onnx_enc.transform(im) for im in imgs]))
        n_blocks = torch_blocks(enc)
        per = len(pool_spec(pool)) * (n_blocks if layers == "all" else 2)
        assert ref.shape == got.shape and ref.shape[1] % per == 0
        assert np.abs(ref - got).max() / np.abs(ref).max() < 2e-3, (key, layers, pool)
        assert onnx_enc.describe()["layout"] == enc.describe()["layout"]


# ----------------------------------------------------------------------------- the derived file
def test_derived_file_is_keyed_by_source_content_and_block_list(exported, tmp_path: Path) -> None:
    from fid_bench.backbones.weights import file_sha256

    src = exported["timm"].path
    sha = file_sha256(src)
    path, blocks, names, n = derived_file(src, sha, "all", tmp_path)
    assert path == derived_path(tmp_path, sha, list(range(n))) and path.is_file() and blocks == list(range(n))
    stamp = path.stat().st_mtime_ns
    # the same content under another name: the same derived file, not written again
    copy = tmp_path / "renamed.onnx"
    shutil.copyfile(src, copy)
    again, *_ = derived_file(copy, sha, list(range(n)), tmp_path)
    assert again == path and path.stat().st_mtime_ns == stamp
    # another block list or another source: another file
    other, blocks2, names2, _ = derived_file(src, sha, [-1], tmp_path)
    assert other != path and blocks2 == [n - 1] and names2 == [names[-1]]
    other_src = exported["open_clip"].path
    assert derived_file(other_src, file_sha256(other_src), [0], tmp_path)[0].name.startswith(
        file_sha256(other_src)[:16]
    )
    import onnx

    outputs = [o.name for o in onnx.load(str(path)).graph.output]
    assert outputs[0] == "image_embeds" and outputs[1:] == names
    with pytest.raises(FidBenchError, match=rf"block 99 does not exist; .* has {n} blocks"):
        derived_file(src, sha, [99], tmp_path)


def test_identity_without_layers_is_unchanged_and_with_them_follows_them(exported) -> None:
    path = str(exported["timm"].path)
    base = OnnxEncoder(path=path)
    assert '"layers"' not in base.identity and '"pool"' not in base.identity
    assert '"layers"' not in timm_vit().identity and '"layers"' not in clip_vit().identity
    ids = {
        OnnxEncoder(path=path, layers=layers, pool=pool).identity
        for layers, pool in (("all", "cls"), ("all", "both"), ([1], "cls"), ([0, 1], "cls"))
    }
    assert len(ids) == 4 and base.identity not in ids
    assert timm_vit(layers="all").identity != timm_vit().identity


def test_bad_layer_options_are_one_line_errors() -> None:
    for bad in ("some", [], [1, 1], [1.5], True):
        with pytest.raises(FidBenchError, match="model.layers"):
            layer_spec(bad)
    for bad in ("max", ["cls", "cls"], []):
        with pytest.raises(FidBenchError, match="model.pool"):
            pool_spec(bad)
    with pytest.raises(FidBenchError, match="model.layers replaces"):
        OnnxEncoder(path="x.onnx", layers="all", token="cls")
    with pytest.raises(FidBenchError, match="model.layers and model.expose cannot be combined"):
        OnnxEncoder(path="x.onnx", layers="all", expose=["/some/tensor"])
    assert pool_spec("both") == ["cls", "mean"] and layer_spec(3) == [3]


def test_pooling_and_selection_arithmetic() -> None:
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(pool_tokens(hidden, ["cls"]), hidden[:, 0])
    np.testing.assert_array_equal(
        pool_tokens(hidden, ["mean", "cls"]), np.c_[hidden[:, 1:].mean(1), hidden[:, 0]]
    )
    lay = [[0, "cls"], [0, "mean"], [5, "cls"], [5, "mean"]]
    assert select_columns(lay, 8, [5]).tolist() == [4, 5, 6, 7]
    assert select_columns(lay, 8, ["0:mean", "5:cls"]).tolist() == [2, 3, 4, 5]
    assert select_columns(lay, 8, [-1]).tolist() == [4, 5, 6, 7]
    with pytest.raises(FidBenchError, match="not among the extracted blocks"):
        select_columns(lay, 8, [3])


# ----------------------------------------------------------------------------- features.select in a job
def test_select_chooses_cached_blocks_without_extracting_again(compose_cfg, exported) -> None:
    import mlflow

    from fid_bench.jobs.experiment import run_job

    report = exported["timm"]
    pp = report.preprocess
    common = [
        "model=onnx",
        f"model.path={report.path}",
        f"model.image_size={pp['image_size']}",
        f"model.crop_pct={pp['crop_pct']}",
        f"model.mean=[{','.join(map(str, pp['mean']))}]",
        f"model.std=[{','.join(map(str, pp['std']))}]",
        "model.layers=all",
        "model.pool=both",
        "classifier=logreg",
        "eval.bootstrap=0",
    ]
    run_job(compose_cfg(*common))
    run_job(compose_cfg(*common, "features.select=[1]"))
    run_job(compose_cfg(*common, "features.select=['0:cls']"))
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["start_time ASC"])
    first, second, third = (r.data.metrics for r in runs)
    assert first["n_extracted"] > 0 and second["n_extracted"] == 0 and third["n_extracted"] == 0
    width = first["feature_dim"] / (2 * torch_blocks(timm_vit()))  # every block, two pools each
    assert second["feature_dim"] == 2 * width and third["feature_dim"] == width
    with pytest.raises(FidBenchError, match="not among the extracted blocks"):
        run_job(compose_cfg(*common, "features.select=[99]"))


def test_a_torch_cnn_with_layers_is_a_one_line_error() -> None:
    enc = FrozenEncoder(TimmBackbone("test_resnet", pretrained=False, layers="all"))
    enc.prepare("cpu")
    with pytest.raises(FidBenchError, match="has no transformer blocks") as err:
        enc.load()
    assert "\n" not in str(err.value)


def test_layers_work_on_a_file_whose_own_output_is_not_2d(exported, tmp_path: Path) -> None:
    """A backbone inside a larger model (e.g. dinov2_vits14's saliency file) has no 2-D output of its
    own: its blocks are still found and give the same features as the plain export's."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(exported["timm"].path))
    first = model.graph.output[0].name
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "unsq_axes"))
    model.graph.node.append(helper.make_node("Unsqueeze", [first, "unsq_axes"], ["embeds_3d"]))
    out = helper.make_tensor_value_info("embeds_3d", onnx.TensorProto.FLOAT, None)
    del model.graph.output[:]
    model.graph.output.append(out)
    cut = tmp_path / "no_2d_output.onnx"
    onnx.save(model, str(cut))
    pre = exported["timm"].preprocess
    imgs = photos(2)
    # without layers the file is refused in one line, as before
    plain = OnnxEncoder(path=str(cut), weights_dir=str(tmp_path), **pre)
    with pytest.raises(FidBenchError, match="no 2-D output"):
        plain.prepare("cpu")
        plain.encode(np.stack([plain.transform(im) for im in imgs]))
    got, ref = (
        OnnxEncoder(path=str(p), weights_dir=str(tmp_path), layers="all", pool="both", **pre)
        for p in (cut, exported["timm"].path)
    )
    for enc in (got, ref):
        enc.prepare("cpu")
    a = got.encode(np.stack([got.transform(im) for im in imgs]))
    b = ref.encode(np.stack([ref.transform(im) for im in imgs]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
