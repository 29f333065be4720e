"""Extraction speed work that must not change what is computed: the normalisation fused into the
graph gives the same features, reduced-scale JPEG decoding is keyed, throughput is reported."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones import onnx_files
from fid_bench.data.decode import load_rgb
from fid_bench.errors import FidBenchError
from fid_bench.features import extract as extract_mod
from fid_bench.features.extract import extract_features
from fid_bench.features.onnx import OnnxEncoder
from tests.test_onnx import PLAIN, images, tiny_graph

#: the user's weights cache as it was before the tests' isolation (the real CLIP file, when fetched)
REAL_WEIGHTS = onnx_files.default_weights_dir()


def fixed_batch(n: int = 6, size: int = 64, seed: int = 3) -> list[Image.Image]:
    """Noise and smooth gradients (int8 kernels round differently on the two), JPEG round-tripped."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2:
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            arr = np.stack([np.add.outer(ramp, ramp * (c + 1) / 4) % 256 for c in range(3)], axis=2)
            arr = arr.astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def features(enc: OnnxEncoder, imgs: list[Image.Image]) -> np.ndarray:
    enc.prepare("cpu")
    return enc.encode(np.stack([enc.transform(im) for im in imgs]))


def test_fused_normalisation_gives_the_same_features_and_identity(tmp_path: Path) -> None:
    path = str(tiny_graph(tmp_path / "tiny.onnx"))
    for kwargs in ({}, {"token": "cls"}, {"token": "mean"}):
        plain = OnnxEncoder(
            path=path, fuse_normalise=False, weights_dir=str(tmp_path / "w"), **kwargs, **PLAIN
        )
        fused = OnnxEncoder(path=path, weights_dir=str(tmp_path / "w"), **kwargs, **PLAIN)
        a, b = features(plain, images(7)), features(fused, images(7))
        assert fused.describe()["input"] == "pixels_uint8"  # the session really takes the uint8 pixels
        # the same float32 operations; onnxruntime may then sum the means in another order (layout
        # optimisation of the reduction): measured max 1.2e-7 here, 0.0 on the real CLIP file below
        assert np.abs(a - b).max() <= 1e-6, kwargs
        assert plain.identity == fused.identity
    derived = list((tmp_path / "w" / "onnx" / "derived").glob("*-u8-*.onnx"))
    assert len(derived) == 1  # one cached copy, shared by the three encoders


def test_fused_normalisation_with_a_fixed_batch_and_a_named_input(tmp_path: Path) -> None:
    path = str(tiny_graph(tmp_path / "fixed.onnx", batch=4))
    plain = OnnxEncoder(path=path, fuse_normalise=False, input_name="pixel_values", **PLAIN)
    fused = OnnxEncoder(path=path, input_name="pixel_values", **PLAIN)
    np.testing.assert_allclose(
        features(plain, images(6)), features(fused, images(6)), atol=1e-6
    )  # padded to 4
    with pytest.raises(FidBenchError, match="no input 'x'"):
        OnnxEncoder(path=path, input_name="x", **PLAIN).load()


@pytest.mark.skipif(
    onnx_files.status("clip_vit_b16_int8", REAL_WEIGHTS) != "cached",
    reason="clip_vit_b16_int8 not in the weights cache",
)
def test_real_clip_file_same_features_before_and_after(tmp_path: Path) -> None:
    """The real int8 CLIP file on a fixed batch: max abs difference 0 (measured: 0.0 of values up to 9)."""
    weights = tmp_path / "w"
    local = onnx_files.local_path("clip_vit_b16_int8", weights)
    local.parent.mkdir(parents=True)
    local.symlink_to(onnx_files.local_path("clip_vit_b16_int8", REAL_WEIGHTS))
    imgs = fixed_batch()
    before = OnnxEncoder(file="clip_vit_b16_int8", weights_dir=str(weights), fuse_normalise=False, threads=1)
    after = OnnxEncoder(file="clip_vit_b16_int8", weights_dir=str(weights), threads=1)
    a, b = features(before, imgs), features(after, imgs)
    assert a.shape == (6, 512) and np.abs(a).max() > 0.1
    assert float(np.abs(a - b).max()) == 0.0
    assert before.identity == after.identity


def test_draft_decoding_is_keyed_and_decodes_less(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(big, quality=90)
    png = tmp_path / "big.png"
    Image.open(big).save(png)
    assert load_rgb(big, draft=(112, 112)).size == (200, 150)  # 1/4: the largest reduction >= 112
    assert load_rgb(big, draft=(301, 301)).size == (800, 600)  # halving would give 300 < 301: full decode
    assert load_rgb(png, draft=(112, 112)).size == (800, 600)  # only JPEG decodes at reduced scale
    off = OnnxEncoder(path="x.onnx", image_size=112)
    on = OnnxEncoder(path="x.onnx", image_size=112, draft=True)
    assert off.draft_size is None and on.draft_size == (112, 112)
    assert OnnxEncoder(path="x.onnx", image_size=112, crop_pct=0.875, draft=True).draft_size == (128, 128)
    assert "draft" not in off.preprocess and on.preprocess["draft"] is True  # default identity unchanged
    with pytest.raises(FidBenchError, match="model.draft"):
        OnnxEncoder(path="x.onnx", resize="native", draft=True)


def test_extraction_reports_throughput_and_stays_quiet_under_tests(tmp_path: Path) -> None:
    import hashlib

    folder = tmp_path / "img"
    folder.mkdir()
    paths = []
    for i, im in enumerate(images(5, seed=1)):
        paths.append(str(folder / f"{i}.png"))
        im.save(paths[-1])
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    enc = OnnxEncoder(path=str(tiny_graph(tmp_path / "tiny.onnx")), **PLAIN)
    _, stats = extract_features(enc, paths, sha1s, tmp_path / "cache", num_workers=0, batch_size=2)
    assert stats["n_extracted"] == 5 and stats["extract/seconds"] > 0
    assert stats["extract/images_per_s"] == pytest.approx(5 / stats["extract/seconds"])
    parts = [stats[f"extract/{k}_seconds"] for k in ("load", "wait", "encode", "write")]
    assert all(p >= 0 for p in parts) and stats["extract/encode_seconds"] > 0
    assert sum(parts) <= stats["extract/seconds"] + 1e-6  # a split of the extraction's own time
    _, again = extract_features(enc, paths, sha1s, tmp_path / "cache", num_workers=0)
    assert again["extract/seconds"] == 0.0 and again["extract/images_per_s"] == 0.0  # all cached
    assert "PYTEST_CURRENT_TEST" in os.environ
    assert extract_mod._show_progress(None) is False  # no bar in test logs unless asked
    assert extract_mod._show_progress(True) is True


def test_cost_quality_plot_takes_speed_from_runs_that_extracted(tmp_path: Path) -> None:
    import pandas as pd

    from fid_bench.evaluation.plots import cost_quality_png

    runs = pd.DataFrame(
        {
            "encoder": ["clip", "clip", "dino", "spectrum"],
            "images_per_s": [25.0, 0.0, 9.0, 0.0],  # the second clip run found its features cached
            "roc_auc": [0.95, 0.97, 0.96, 0.9],
        }
    )
    drawn = cost_quality_png(runs, tmp_path / "frontier.png").set_index("encoder")
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert drawn.loc["clip", "roc_auc"] == 0.97 and drawn.loc["clip", "images_per_s"] == 25.0
    assert "spectrum" not in drawn.index  # never timed: no point rather than a point at 0
    with pytest.raises(FidBenchError, match="need columns"):
        cost_quality_png(runs.drop(columns="roc_auc"), tmp_path / "x.png")


def _check_set(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """real/ and fake/ PNGs the tiny graph tells apart (fakes are redder), with noise so it is not perfect."""
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True)
        for i in range(n // 2):
            arr = rng.integers(0, 256, (8, 8, 3)).astype(np.int16)
            if label == "fake":
                arr[..., 0] += 40
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / label / f"{i}.png")
    return folder


def test_quantised_copies_are_made_checked_and_refused_when_worse(tmp_path: Path) -> None:
    from fid_bench.features import onnx_quantise as q

    src = tiny_graph(tmp_path / "tiny.onnx")
    sets = {"a": q.labelled_images(_check_set(tmp_path / "a"), 24)}
    assert list(sets["a"][1]).count(1) == 12
    weights = str(tmp_path / "w")
    fp32 = OnnxEncoder(path=str(src), weights_dir=weights, **PLAIN)
    path, report = q.make_checked(fp32, "dynamic", sets)
    assert path.is_file() and path.name.startswith(fp32.file_sha256()[:16]) and "-int8-dynamic-" in path.name
    assert set(report["sets"]["a"]) >= {"min_cosine", "fp32_roc_auc", "int8_roc_auc", "auc_drift", "passed"}
    assert report["passed"] == (
        report["min_cosine"] >= 0.99 and abs(report["sets"]["a"]["auc_drift"]) <= 0.005
    )
    int8 = OnnxEncoder(path=str(src), weights_dir=weights, quantise="dynamic", **PLAIN)
    assert int8.identity != fp32.identity  # int8 features never mix with fp32 ones
    calib = [str(p) for p in sorted((tmp_path / "a" / "real").iterdir())]
    static, _ = q.make_checked(fp32, "static", sets, calibration=calib)
    assert static != path and static.is_file()
    # a copy whose check failed is refused, with the figures, in one line
    refused = {**q.read_report(path), "passed": False}
    q.write_report(path, refused)
    with pytest.raises(FidBenchError, match="refused .*a: min cosine") as info:
        OnnxEncoder(path=str(src), weights_dir=weights, quantise="dynamic", **PLAIN).load()
    assert "\n" not in str(info.value)
    with pytest.raises(FidBenchError, match="quantise-onnx"):
        OnnxEncoder(path=str(src), weights_dir=str(tmp_path / "w2"), quantise="static", **PLAIN).load()
    with pytest.raises(FidBenchError, match="model.quantise"):
        OnnxEncoder(path=str(src), quantise="int4", **PLAIN)


def test_an_encoder_pickled_before_the_new_settings_still_loads(tmp_path: Path) -> None:
    import pickle

    path = str(tiny_graph(tmp_path / "tiny.onnx"))
    enc = OnnxEncoder(path=path, **PLAIN)
    state = enc.__getstate__()
    for key in ("fuse_normalise", "graph_optimization", "quantise", "draft_size"):
        state.pop(key)
    old = OnnxEncoder.__new__(OnnxEncoder)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    assert again.identity == enc.identity
    np.testing.assert_allclose(features(again, images(3)), features(enc, images(3)), atol=1e-6)


def test_quantise_command_checks_a_file_and_refuses_what_it_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from fid_bench.cli import main

    src = tiny_graph(tmp_path / "tiny.onnx")
    check = _check_set(tmp_path / "a")
    model = ["model=onnx", f"model.path={src}", "model.image_size=8", "model.resize=squash"]
    code = main(["quantise-onnx", *model, "--check", f"a={check}", "--n-check", "24"])
    printed = capsys.readouterr().out
    assert code in (0, 1) and printed.startswith("dynamic: ") and "fp32 images/s" in printed
    assert ("passed" in printed) == (code == 0) and "a: min cosine" in printed
    cases = [
        (["quantise-onnx", "model=spectrum", "--check", f"a={check}"], "not an ONNX encoder"),
        (["quantise-onnx", *model], "at least one --check"),
        (["quantise-onnx", *model, "--check", "a"], "expected NAME=DIR"),
        (["quantise-onnx", *model, "--check", f"a={tmp_path}"], "real/ and fake/"),
        (["quantise-onnx", *model, "--check", f"a={check}", "--method", "static"], "needs --calibrate"),
    ]
    for argv, message in cases:
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (argv, err)
