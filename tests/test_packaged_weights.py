"""Weights from packaged files: the mapping into timm, the output check, the converted-weights cache,
the known-file states and the offline stop of the headline command. Synthetic checkpoints only; the
real package files are used by the slow tests at the end, which skip when the files are absent."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from fid_bench.backbones import convert, onnx_files
from fid_bench.errors import FidBenchError

ARCH = "tf_efficientnet_lite0"
_TOP = {
    "conv_stem": "_conv_stem",
    "bn1": "_bn0",
    "conv_head": "_conv_head",
    "bn2": "_bn1",
    "classifier": "_fc",
}
_IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}
_DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}


def timm_lite(seed: int) -> Any:
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(ARCH, pretrained=False)
    with torch.no_grad():  # BN statistics away from 0/1, so a wrong mapping shows in the outputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def package_format(model: Any) -> dict[str, Any]:
    """A timm EfficientNet-Lite state dict written the way the package's files name it (written
    independently of the converter: the inverse of its tables, block order by stage then index)."""
    sd = model.state_dict()
    blocks = sorted({tuple(int(p) for p in k.split(".")[1:3]) for k in sd if k.startswith("blocks.")})
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            block = (int(parts[1]), int(parts[2]))
            table = _IR if any(k.startswith(f"blocks.{block[0]}.{block[1]}.conv_pwl.") for k in sd) else _DS
            out[f"_blocks.{blocks.index(block)}.{table[parts[3]]}." + ".".join(parts[4:])] = value
        else:
            out[f"{_TOP[parts[0]]}." + ".".join(parts[1:])] = value
    return out


def target_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def lite() -> Any:
    return timm_lite(0)


def test_the_mapping_covers_every_tensor_both_ways(lite: Any) -> None:
    import torch

    source = package_format(lite)
    mapping = convert.efficientnet_lite_mapping(list(source), list(lite.state_dict()))
    sd = convert.map_state_dict(source, mapping, target_shapes(lite), what="t")
    assert set(sd) == set(lite.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in lite.state_dict().items())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", r"t: 1 tensor\(s\) of the network get nothing from the file, e.g. blocks.6.0.bn3.bias"),
        ("extra", r"t: 1 tensor\(s\) of the file map to nothing in the network, e.g. _blocks.99._bn0.weight"),
        (
            "shape",
            r"t: _fc.weight -> classifier.weight has shape \[1000, 7\], the network's is \[1000, 1280\]",
        ),
        ("unknown", r"t: 1 tensor\(s\) of the file map to nothing in the network, e.g. _stem_extra.weight"),
    ],
)
def test_a_missing_extra_or_misshaped_tensor_fails_in_one_line(lite: Any, damage: str, message: str) -> None:
    import torch

    source = package_format(lite)
    if damage == "missing":
        del source["_blocks.15._bn2.bias"]
    elif damage == "extra":
        source["_blocks.99._bn0.weight"] = torch.zeros(3)
    elif damage == "shape":
        source["_fc.weight"] = torch.zeros(1000, 7)
    else:
        source["_stem_extra.weight"] = torch.zeros(3)
    mapping = convert.efficientnet_lite_mapping(list(source), list(lite.state_dict()))
    with pytest.raises(FidBenchError, match=message) as info:
        convert.map_state_dict(source, mapping, target_shapes(lite), what="t")
    assert "\n" not in str(info.value)


def test_dropped_parts_are_declared_not_silently_ignored() -> None:
    import torch

    source = {"backbone.w": torch.zeros(2), "decoder.w": torch.zeros(3)}
    mapping = {"backbone.w": "w"}
    with pytest.raises(FidBenchError, match="map to nothing.*decoder.w"):
        convert.map_state_dict(source, mapping, {"w": (2,)}, what="t")
    assert set(
        convert.map_state_dict(source, mapping, {"w": (2,)}, what="t", drop_prefixes=("decoder.",))
    ) == {"w"}


def test_dinov2_names_map_onto_timm_with_fused_qkv() -> None:
    import timm
    import torch

    model = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=28, depth=2
    )
    hf: dict[str, Any] = {
        "backbone.embeddings.cls_token": torch.zeros(1, 1, 384),
        "backbone.embeddings.position_embeddings": torch.zeros(1, 5, 384),
        "backbone.embeddings.patch_embeddings.projection.weight": torch.zeros(384, 3, 14, 14),
        "backbone.embeddings.patch_embeddings.projection.bias": torch.zeros(384),
        "backbone.layernorm.weight": torch.zeros(384),
        "backbone.layernorm.bias": torch.zeros(384),
    }
    for i in range(2):
        p = f"backbone.encoder.layer.{i}."
        for part, shape in (("norm1", (384,)), ("norm2", (384,))):
            hf[f"{p}{part}.weight"], hf[f"{p}{part}.bias"] = torch.zeros(shape), torch.zeros(shape)
        for q in ("query", "key", "value"):
            hf[f"{p}attention.attention.{q}.weight"] = torch.full(
                (384, 384), float({"query": 0, "key": 1, "value": 2}[q])
            )
            hf[f"{p}attention.attention.{q}.bias"] = torch.zeros(384)
        for part, o, i_ in (
            ("attention.output.dense", 384, 384),
            ("mlp.fc1", 1536, 384),
            ("mlp.fc2", 384, 1536),
        ):
            hf[f"{p}{part}.weight"], hf[f"{p}{part}.bias"] = torch.zeros(o, i_), torch.zeros(o)
        hf[f"{p}layer_scale1.lambda1"] = torch.zeros(384)
        hf[f"{p}layer_scale2.lambda1"] = torch.zeros(384)
    fused = convert._fuse_qkv(hf)
    mapping = convert.dinov2_mapping(list(fused), list(model.state_dict()))
    sd = convert.map_state_dict(fused, mapping, target_shapes(model), what="t")
    assert set(sd) == set(model.state_dict())
    qkv = sd["blocks.1.attn.qkv.weight"]
    assert (
        qkv.shape == (1152, 384)
        and qkv[:384].eq(0).all()
        and qkv[384:768].eq(1).all()
        and qkv[768:].eq(2).all()
    )


# ----------------------------------------------------------------------------- check and cache
@pytest.fixture
def tiny_lite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lite: Any) -> tuple[convert.Conversion, Path]:
    """A known file ``tiny_lite`` (a package-format state dict of a random network) in the weights
    cache, and its conversion, checked against the network the file was written from."""
    import torch

    weights = tmp_path / "w"
    path = tmp_path / "tiny_lite.pth"
    torch.save(package_format(lite), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = onnx_files.OnnxFile(
        name="tiny_lite",
        package="fidbench-tiny-lite==0.1",
        member="m/tiny_lite.pth",
        sha256=digest,
        size=path.stat().st_size,
    )
    monkeypatch.setitem(onnx_files.KNOWN, "tiny_lite", entry)
    local = onnx_files.local_path("tiny_lite", weights)
    local.parent.mkdir(parents=True)
    local.write_bytes(path.read_bytes())

    def reference(file: Path, images: Any, weights_dir: Path) -> Any:
        return lite(convert.normalise(images, convert.LITE_MEAN, convert.LITE_STD))

    conv = convert.Conversion(
        file="tiny_lite",
        arch=ARCH,
        native_size=32,
        read=convert.read_torch_state_dict,
        rename=convert.efficientnet_lite_mapping,
        reference=reference,
        converted=convert.efficientnet_lite_converted,
    )
    monkeypatch.setitem(convert.CONVERSIONS, "tiny_lite", conv)
    return conv, weights


def test_the_converted_weights_are_checked_then_cached_and_loaded_directly(
    tiny_lite: tuple[convert.Conversion, Path], lite: Any
) -> None:
    import torch

    conv, weights = tiny_lite
    calls = []

    def read(path: Path) -> dict[str, Any]:
        calls.append(path)
        return convert.read_torch_state_dict(path)

    conv = dataclasses.replace(conv, read=read)
    sd, report = convert.converted_state_dict(conv, weights)
    assert len(calls) == 1 and report["check"]["max_abs_diff"] <= report["check"]["allowed"]
    assert report["source_sha256"] == onnx_files.known("tiny_lite").sha256 and report["tensors"] == len(sd)
    cached = convert.converted_path(conv, weights)
    assert cached.is_file() and onnx_files.known("tiny_lite").sha256[:16] in cached.name
    # a later build reads the cache only: not the source file (gone), not the converter
    onnx_files.local_path("tiny_lite", weights).unlink()
    again, _ = convert.converted_state_dict(conv, weights)
    assert len(calls) == 1
    assert all(torch.equal(again[k], v) for k, v in lite.state_dict().items())


def test_the_check_refuses_a_file_that_is_not_the_source(
    tiny_lite: tuple[convert.Conversion, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    conv, weights = tiny_lite
    # another network's weights under the pinned sha256: mapped fine, outputs differ from the source
    other = tmp_path / "other.pth"
    torch.save(package_format(timm_lite(1)), other)
    local = onnx_files.local_path("tiny_lite", weights)
    local.write_bytes(other.read_bytes())
    entry = onnx_files.known("tiny_lite")
    monkeypatch.setitem(
        onnx_files.KNOWN,
        "tiny_lite",
        dataclasses.replace(entry, sha256=hashlib.sha256(other.read_bytes()).hexdigest()),
    )
    with pytest.raises(
        FidBenchError,
        match=r"tiny_lite -> timm tf_efficientnet_lite0: the converted network differs from the source by up to .*refusing",
    ) as info:
        convert.converted_state_dict(conv, weights)
    assert "\n" not in str(info.value)
    assert not convert.converted_path(conv, weights).exists()
    # a file that is not the pinned one is refused before it is read
    monkeypatch.setitem(onnx_files.KNOWN, "tiny_lite", entry)
    with pytest.raises(FidBenchError, match=r"has sha256 .* not the pinned .*refusing to convert it"):
        convert.converted_state_dict(conv, weights)


def test_the_backbone_builds_from_the_cache_for_both_tracks(
    tiny_lite: tuple[convert.Conversion, Path], lite: Any
) -> None:
    import torch

    from fid_bench.backbones.packaged import PackagedTimmBackbone

    conv, weights = tiny_lite
    backbone = PackagedTimmBackbone("tiny_lite", image_size=32, weights_dir=str(weights))
    built = backbone.build()
    assert built.preprocessing.side == 32 and built.preprocessing.mean == convert.LITE_MEAN
    assert built.num_features == 1280 and not backbone.random_init
    ref = lite.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in built.network.state_dict().items())
    assert backbone.identity_fields(0)["weights"]["sha256"] == onnx_files.known("tiny_lite").sha256
    scratch = PackagedTimmBackbone("tiny_lite", pretrained=False, image_size=32, weights_dir=str(weights))
    assert scratch.random_init and "random_init_seed" in scratch.identity_fields(0)["weights"]


def test_unknown_sources_and_bad_sizes_are_one_line() -> None:
    from fid_bench.backbones.packaged import PackagedTimmBackbone

    with pytest.raises(
        FidBenchError, match="no conversion for 'nope'; known: dinov2_vits14, efficientnet_lite0"
    ):
        PackagedTimmBackbone("nope")
    with pytest.raises(FidBenchError, match="multiple of its 14 px patch, e.g. 70"):
        PackagedTimmBackbone("dinov2_vits14", image_size=64)


# ----------------------------------------------------------------------------- known files
def test_weights_list_tells_cached_corrupt_and_missing(
    tiny_lite: tuple[convert.Conversion, Path], capsys: pytest.CaptureFixture
) -> None:
    from fid_bench.cli import main

    _, weights = tiny_lite
    assert onnx_files.status("tiny_lite", weights) == "cached"
    assert main(["weights", "list", "--dir", str(weights)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert " cached " in rows["tiny_lite"] and " missing " in rows["efficientnet_lite0"]
    assert "Apache-2.0" in rows["efficientnet_lite0"] and "18.8 MB" in rows["efficientnet_lite0"]
    assert "97.4 MB" in rows["dinov2_vits14"]
    local = onnx_files.local_path("tiny_lite", weights)
    data = bytearray(local.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    local.write_bytes(bytes(data))
    assert onnx_files.status("tiny_lite", weights) == "corrupt"
    assert main(["weights", "list", "--dir", str(weights)]) == 0
    assert " corrupt " in {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}["tiny_lite"]


def test_a_file_fetches_what_it_requires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = []
    monkeypatch.setattr(
        onnx_files,
        "_pip_download",
        lambda entry, dest, args: fetched.append(entry.name) or (_ for _ in ()).throw(FidBenchError("stop")),
    )
    with pytest.raises(FidBenchError, match="stop"):
        onnx_files.fetch("efficientnet_lite0", tmp_path / "w")
    assert fetched == [
        "efficientnet_lite_pytorch"
    ]  # the module the conversion is checked against comes first
    assert (
        onnx_files.known("efficientnet_lite_pytorch").filename
        == "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl"
    )


# ----------------------------------------------------------------------------- offline headline
def test_the_offline_preflight_names_the_fetch_and_the_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fid_bench.preflight import missing_weights

    monkeypatch.setenv("FID_BENCH_WEIGHTS_DIR", str(tmp_path / "w"))
    lines = missing_weights(["-m", "model=resnet50,vit_b16"])
    assert len(lines) == 2
    for line, option in zip(lines, ("resnet50", "vit_b16"), strict=True):
        assert line.startswith(f"model={option}: ") and f"fid-bench weights get {option}" in line
        assert "hf-hub:timm/" in line and "model=efficientnet_lite0,dinov2_vits14" in line
    assert missing_weights(["model=spectrum"]) == [] and missing_weights(["model=small_cnn"]) == []
    assert missing_weights(["model=resnet50", "model.pretrained=false"]) == []
    (lite,) = missing_weights(["model=efficientnet_lite0"])
    assert "fid-bench weights get efficientnet_lite0" in lite
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert missing_weights(["-m", "model=resnet50,vit_b16"]) == []  # online: the hub is asked per job


# ----------------------------------------------------------------------------- the real files
def _real(name: str) -> Path:
    path = onnx_files.local_path(name, Path.home() / ".cache" / "fid_bench" / "weights")
    if not path.is_file():
        pytest.skip(f"{name} is not in ~/.cache/fid_bench/weights (fid-bench weights get {name})")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "dinov2_vits14"])
def test_real_files_convert_and_match_their_source(name: str, tmp_path: Path) -> None:
    import shutil

    real_dir = Path.home() / ".cache" / "fid_bench" / "weights"
    path = _real(name)
    weights = tmp_path / "w"
    for dep in (name, *onnx_files.known(name).requires):
        target = onnx_files.local_path(dep, weights)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_real(dep) if dep != name else path, target)
    assert onnx_files.local_path(name, real_dir).is_file()
    sd, report = convert.converted_state_dict(convert.conversion(name), weights)
    assert report["check"]["max_abs_diff"] <= report["check"]["allowed"]
    assert report["tensors"] == len(sd) > 100


def test_both_tracks_take_the_converted_network(
    tiny_lite: tuple[convert.Conversion, Path], tmp_path: Path
) -> None:
    """Frozen features, and fine-tuning whose logged predictor (rebuilt without the weights cache:
    its state dict replaces them) scores as the job did."""
    import pickle

    import numpy as np
    from PIL import Image

    from fid_bench.backbones.packaged import PackagedTimmBackbone
    from fid_bench.features.encoders import as_encoder
    from tests.test_finetune import detector, make_fold, make_images, make_job

    _, weights = tiny_lite
    encoder = as_encoder(PackagedTimmBackbone("tiny_lite", image_size=32, weights_dir=str(weights)))
    encoder.load()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    import torch

    feats = encoder.encode(
        torch.stack([encoder.transform(img), encoder.transform(img.transpose(Image.FLIP_LEFT_RIGHT))])
    )
    assert feats.shape == (2, 1280) and not np.allclose(feats[0], feats[1])

    table = make_images(tmp_path / "img", 16)
    net = {
        "_target_": "fid_bench.backbones.packaged.PackagedTimmBackbone",
        "source": "tiny_lite",
        "pretrained": True,
        "image_size": 32,
        "weights_dir": str(weights),
    }
    det = detector(backbone=net, max_epochs=1)
    scores = det.fit_predict(make_job(table, tmp_path), make_fold(16, 4, 4))
    assert len(scores) == 8 and scores.score.between(0, 1).all()
    onnx_files.local_path("tiny_lite", weights).unlink()
    convert.converted_path(convert.conversion("tiny_lite"), weights).unlink()  # the predictor needs neither
    predictor = pickle.loads(pickle.dumps(det.predictor()))
    np.testing.assert_allclose(
        predictor.predict_paths(table["path"].iloc[12:].tolist()),
        scores[scores.split == "test"].score,
        atol=1e-5,
    )


def test_the_model_options_compose(compose_cfg: Any) -> None:
    from hydra.utils import instantiate

    for option, arch in (
        ("efficientnet_lite0", "tf_efficientnet_lite0"),
        ("efficientnet_lite2", "tf_efficientnet_lite2"),
        ("dinov2_vits14", "vit_small_patch14_dinov2"),
    ):
        cfg = compose_cfg(f"model={option}")
        assert cfg.classifier.name == "finetune"
        backbone = instantiate(cfg.model.backbone)
        assert backbone.model_name == arch and backbone.pretrained and backbone.source == option
    onnx = instantiate(compose_cfg("model=dinov2_vits14_onnx", "classifier=logreg").model.backbone)
    assert onnx.file == "dinov2_vits14" and onnx.expose == [convert.DINOV2_HIDDEN] and onnx.token == "cls"
    dino = instantiate(compose_cfg("model=dinov2_vits14").model.backbone)
    assert dino.image_size == 224  # not timm's 518 px
    assert (
        instantiate(compose_cfg("model=dinov2_vits14", "data.image_size=112").model.backbone).image_size
        == 112
    )
