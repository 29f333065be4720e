"""Format alignment (data.align): the re-encoding itself, its place in both tracks' cache keys and
predictors, the confounded demo set, and the audit's pointer to the option; feature fusion
(model=concat) on real CIFAKE images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fid_bench.data.decode import Alignment, load_rgb, parse_alignment
from fid_bench.errors import FidBenchError
from fid_bench.features.aligned import AlignedEncoder, with_alignment
from fid_bench.features.concat import ConcatEncoder, expand_members
from fid_bench.features.spectrum import SpectrumEncoder

ALIGN = {"format": "jpeg", "quality": 96, "size": None}


def _noise_png(path, seed: int = 0, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, "PNG")


def test_alignment_reencodes_as_the_same_jpeg_pillow_would_write(tmp_path) -> None:
    src = tmp_path / "a.png"
    _noise_png(src)
    aligned = np.asarray(load_rgb(src, ALIGN))
    # the expectation, written out: save the decoded pixels as JPEG 96 (4:2:0) and read them back
    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, "JPEG", quality=96, subsampling=2)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(aligned, expected)
    assert not np.array_equal(aligned, np.asarray(load_rgb(src)))  # a lossy step did happen
    # lossless alignment keeps the pixels; size resizes
    np.testing.assert_array_equal(np.asarray(load_rgb(src, {"format": "png"})), np.asarray(load_rgb(src)))
    assert load_rgb(src, {"format": "png", "size": 32}).size == (32, 32)


def test_png_and_jpeg_copies_end_up_with_the_same_last_encoding(tmp_path) -> None:
    # the same picture stored as PNG and as JPEG 96: aligned at JPEG 96, nearly the same pixels
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "x.png")
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=96)
    a = np.asarray(load_rgb(tmp_path / "x.png", ALIGN)).astype(int)
    b = np.asarray(load_rgb(tmp_path / "x.jpg", ALIGN)).astype(int)
    raw = np.abs(
        np.asarray(load_rgb(tmp_path / "x.png")).astype(int) - np.asarray(load_rgb(tmp_path / "x.jpg"))
    )
    assert np.abs(a - b).mean() <= raw.mean()


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"format": "gif"}, "format must be one of"),
        ({"format": "jpeg", "quality": 0}, "quality must be an integer"),
        ({"format": "png", "quality": 90}, "must be null for the lossless"),
        ({"format": "jpeg", "size": 4}, "size must be null or an integer"),
        ({"fromat": "jpeg"}, "unknown key"),
        ("jpeg", "must be null or a mapping"),
    ],
)
def test_bad_alignment_is_one_line_error(node, message: str) -> None:
    with pytest.raises(FidBenchError, match=message):
        parse_alignment(node)


def test_defaults_and_no_alignment() -> None:
    assert parse_alignment(None) is None and parse_alignment({}) is None
    assert parse_alignment({"format": "jpg"}) == Alignment("jpeg", 96, None)
    assert parse_alignment({"format": "png"}) == Alignment("png", None, None)


def test_aligned_features_have_their_own_cache_key_and_pixels(tmp_path) -> None:
    src = tmp_path / "a.png"
    _noise_png(src, size=64)
    plain = SpectrumEncoder()
    aligned = AlignedEncoder(SpectrumEncoder(), ALIGN)
    other = AlignedEncoder(SpectrumEncoder(), {"format": "jpeg", "quality": 80})
    assert len({plain.identity, aligned.identity, other.identity}) == 3
    img = load_rgb(src)
    np.testing.assert_allclose(
        aligned.encode([aligned.transform(img)]), plain.encode([plain.transform(load_rgb(src, ALIGN))])
    )
    assert not np.allclose(aligned.encode([aligned.transform(img)]), plain.features(img))


def test_with_alignment_wraps_every_member_of_a_concatenation() -> None:
    cfg = expand_members(
        {"_target_": "fid_bench.features.concat.ConcatEncoder", "members": ["spectrum", "spectrum"]}
    )
    wrapped = with_alignment(cfg, ALIGN)
    assert [m["_target_"] for m in wrapped["members"]] == ["fid_bench.features.aligned.AlignedEncoder"] * 2
    assert with_alignment(cfg, None) is cfg


def test_finetune_track_caches_and_predicts_through_the_alignment(tmp_path) -> None:
    from fid_bench.finetune.decoded import cache_key, prepare_file

    src = tmp_path / "a.png"
    _noise_png(src, size=40)
    assert cache_key(["s"], 32) != cache_key(["s"], 32, ALIGN)
    assert cache_key(["s"], 32, ALIGN) != cache_key(["s"], 32, {"format": "jpeg", "quality": 80})
    plain, aligned = prepare_file(str(src), 32), prepare_file(str(src), 32, ALIGN)
    assert aligned.shape == plain.shape == (32, 32, 3) and not np.array_equal(aligned, plain)


def test_confounded_demo_stores_one_class_as_jpeg(tmp_path) -> None:
    from fid_bench.data.readers import DemoReader

    table = (
        DemoReader(tmp_path / "d", n_real=12, n_fake=6, n_predict=0, size=32, confound="format").read().table
    )
    fmt = table["path"].map(lambda p: Image.open(p).format)
    assert set(fmt[table["label"] == 0]) == {"JPEG"} and set(fmt[table["label"] == 1]) == {"PNG"}
    with pytest.raises(FidBenchError, match="confound must be"):
        DemoReader(tmp_path / "e", confound="size").read()


def test_audit_names_data_align_on_a_format_shortcut(compose_cfg, tmp_path) -> None:
    from fid_bench.audit import audit_from_config
    from fid_bench.data.readers import DemoReader

    samples = DemoReader(tmp_path / "d", n_real=24, n_fake=12, n_predict=0, size=32, confound="format").read()
    report = audit_from_config(samples, compose_cfg())
    format_warnings = [w for w in report.warnings if "shortcut: 'format'" in w]
    # the demo stores real images at JPEG quality 90: the suggestion does not re-encode above it
    assert format_warnings and "data.align='{format: jpeg, quality: 90}'" in format_warnings[0]


def test_aligned_job_end_to_end_on_cifake(compose_cfg, cifake_small) -> None:
    """A real job with data.align: features of aligned images, and a predictor that aligns too."""
    from fid_bench.jobs.experiment import run_job
    from fid_bench.tracking.pyfunc import load_predictor

    cfg = compose_cfg(
        "data=folder",
        f"data.root={cifake_small}",
        "classifier=logreg",
        "data.align={format: jpeg, quality: 80}",
        tiny=False,
    )
    auc = run_job(cfg)
    assert auc > 0.75
    from mlflow import MlflowClient

    client = MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    predictor = load_predictor(run.info.run_id)
    assert "align:v1:jpeg:q80" in predictor.encoder.identity


def test_concat_of_two_encoders_on_cifake(cifake_small, tmp_path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fid_bench.data.decode import check_image
    from fid_bench.features.extract import extract_features

    paths = sorted(str(p) for p in cifake_small.glob("train/*/*.jpg"))[::2]
    sha1s = [check_image(p).sha1 for p in paths]
    y = np.array([1 if "/FAKE/" in p else 0 for p in paths])
    a, b = SpectrumEncoder(), SpectrumEncoder(max_tiles=1, radial_bins=6)
    cache = tmp_path / "cache"
    fa, _ = extract_features(a, paths, sha1s, cache, num_workers=0)  # one member already cached
    concat = ConcatEncoder([a, b])
    feats, stats = concat.extract(paths, sha1s, cache, num_workers=0)
    assert feats.shape == (len(paths), a.dim + b.dim)
    np.testing.assert_array_equal(feats[:, : a.dim], fa)
    assert stats["cache_hit_ratio"] == pytest.approx(0.5)  # a from its cache, b extracted
    # the direct encoder path gives the same columns
    direct = concat.encode([concat.transform(load_rgb(p)) for p in paths[:5]])
    np.testing.assert_allclose(direct, feats[:5], rtol=1e-5, atol=1e-5)
    half = len(y) // 2
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:half], order[half:]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(feats[tr], y[tr])
    assert roc_auc_score(y[te], clf.predict_proba(feats[te])[:, 1]) > 0.8


def test_concat_refuses_fewer_than_two_members() -> None:
    with pytest.raises(FidBenchError, match="at least two"):
        ConcatEncoder([SpectrumEncoder()])
    with pytest.raises(FidBenchError, match="unknown model"):
        expand_members(
            {"_target_": "fid_bench.features.concat.ConcatEncoder", "members": ["spectrum", "nope"]}
        )
