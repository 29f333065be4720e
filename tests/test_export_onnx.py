"""``fid-bench export-onnx``: tiny random timm and open_clip encoders exported, checked, and run by ``model=onnx``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.errors import FidBenchError
from fid_bench.features import onnx_export as export
from fid_bench.features.onnx import PREPROCESS_META, OnnxEncoder
from tests.test_encoders import (
    clip_encoder,
    timm_encoder,
    tiny_clip,  # noqa: F401 - the fixture registers tiny open_clip configs
)


def photos(n: int = 4) -> list[Image.Image]:
    """Images of another size and aspect than the networks take, so resizing and cropping matter."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:50, 0:70] / 50
    out = []
    for _ in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 6) + yy * rng.uniform(1, 6)) for _ in range(3)], axis=-1)
        out.append(
            Image.fromarray((base * 100 + 128 + rng.normal(0, 10, base.shape)).clip(0, 255).astype(np.uint8))
        )
    return out


def torch_features(enc, imgs: list[Image.Image]) -> np.ndarray:
    import torch

    enc.load()
    return enc.encode(torch.stack([enc.transform(im) for im in imgs]))


def onnx_features(report: export.ExportReport, imgs: list[Image.Image]) -> np.ndarray:
    enc = OnnxEncoder(path=str(report.path), **report.preprocess)
    enc.prepare("cpu")
    return enc.encode(np.stack([enc.transform(im) for im in imgs]))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.mark.parametrize("build", ["timm", "open_clip"])
def test_fp32_export_reproduces_the_torch_encoder_through_model_onnx(
    tmp_path: Path,
    build: str,
    tiny_clip: list[str],  # noqa: F811 - a fixture
) -> None:
    enc = (
        timm_encoder("test_vit", pretrained=False)
        if build == "timm"
        else clip_encoder("TinyViT-test", pretrained=False)
    )
    out = tmp_path / "out" / "enc.onnx"
    out.parent.mkdir()
    report = export.export_encoder(enc, out, batch=3, exporter="torchscript")
    assert out.is_file() and report.path == out and report.max_rel_diff <= export.FP32_TOLERANCE
    assert report.torch_images_per_s > 0 and report.onnx_images_per_s > 0
    assert [p.name for p in out.parent.iterdir()] == ["enc.onnx"]  # no temporary file left
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta[PREPROCESS_META]) == report.preprocess
    # the printed overrides reproduce the torch encoder's preprocessing and features on other images
    imgs = photos()
    assert rel(torch_features(enc, imgs), onnx_features(report, imgs)) < 2e-3
    assert any(
        line.startswith("use it with: python -m fid_bench model=onnx model.path=") for line in report.lines()
    )


def test_int8_export_is_checked_by_row_cosine(tmp_path: Path) -> None:
    enc = timm_encoder("test_resnet", pretrained=False)
    report = export.export_encoder(enc, tmp_path / "q.onnx", int8=True, batch=4, exporter="torchscript")
    assert report.int8 and report.min_cosine >= export.INT8_MIN_COSINE
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert "int8" in meta["fid_bench.quantisation"] and PREPROCESS_META in meta


@pytest.mark.parametrize("int8", [False, True])
def test_a_file_that_fails_the_check_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, int8: bool
) -> None:
    real = export.onnx_outputs
    calls = []

    def drifting(path: Path, x: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, float]:
        out, speed = real(path, x, threads)
        calls.append(path.name)
        if int8 and path.name == "fp32.onnx":
            return out, speed  # the fp32 file passes; the quantised one drifts
        noise = np.random.default_rng(0).normal(0, 1, out.shape).astype(np.float32) * np.abs(out).max()
        return out + noise, speed

    monkeypatch.setattr(export, "onnx_outputs", drifting)
    out = tmp_path / "out" / "bad.onnx"
    out.parent.mkdir()
    message = "int8 rows have cosine" if int8 else "differs from torch"
    with pytest.raises(FidBenchError, match=message) as info:
        export.export_encoder(
            timm_encoder("test_resnet", pretrained=False), out, int8=int8, batch=2, exporter="torchscript"
        )
    assert "nothing written" in str(info.value) and "\n" not in str(info.value)
    assert calls[-1] == ("int8.onnx" if int8 else "fp32.onnx")
    assert list(out.parent.iterdir()) == []  # neither the file nor the temporary folder


def test_export_check_arithmetic() -> None:
    ref = np.array([[1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    assert export.max_rel_diff(ref, ref) == 0.0
    assert export.max_rel_diff(ref, ref + np.float32(4e-4)) == pytest.approx(1e-4, rel=1e-3)
    assert export.max_rel_diff(ref, ref[:1]) == float("inf")
    np.testing.assert_allclose(export.row_cosines(ref, -ref), [-1.0, -1.0], rtol=1e-6)


def test_command_exports_a_config_model_and_refuses_what_it_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from fid_bench.cli import main

    out = tmp_path / "r.onnx"
    args = ["export-onnx", "model=resnet50", "model.name=test_resnet", "model.pretrained=false"]
    assert main([*args, "--out", str(out), "--batch", "2", "--exporter", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "max relative difference" in printed and "images/s" in printed
    assert f"model=onnx model.path={out}" in printed and "model.crop_pct=" in printed
    cases = [
        (["export-onnx", "model=spectrum", "--out", str(tmp_path / "s.onnx")], "builds SpectrumEncoder"),
        (["export-onnx", "model=small_cnn", "--out", str(tmp_path / "s.onnx")], "no frozen encoder"),
        (["export-onnx", "model.name=x", "--out", str(tmp_path / "s.onnx")], "say which model"),
        ([*args, "--out", str(tmp_path / "s.txt")], "must end in .onnx"),
        ([*args, "--out", str(tmp_path / "no" / "s.onnx")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_default_exporter_writes_a_dynamic_batch_file(tmp_path: Path) -> None:
    report = export.export_encoder(timm_encoder("test_vit", pretrained=False), tmp_path / "d.onnx", batch=2)
    enc = OnnxEncoder(path=str(report.path), **report.preprocess)
    imgs = photos(5)  # another batch size than the export's
    assert (
        rel(torch_features(timm_encoder("test_vit", pretrained=False), imgs), onnx_features(report, imgs))
        < 2e-3
    )
    assert enc.identity
