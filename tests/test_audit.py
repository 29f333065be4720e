"""Data audit: each planted defect is found, clean data raises no warning, --fix removes the right rows."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.audit import (
    audit_from_config,
    audit_samples,
    audit_settings,
    clean_manifest,
    hashing,
    headers,
    scan,
)
from fid_bench.audit.hashing import near_pairs
from fid_bench.commands.audit_command import main
from fid_bench.data.jpeg_quality import estimate_quality, ijg_table, table_distance
from fid_bench.data.samples import SAMPLE_COLUMNS, SKIP_COLUMNS, Samples
from fid_bench.errors import FidBenchError

# ----------------------------------------------------------------------------- tiny data sets


def _image(seed: int, size: tuple[int, int] = (24, 24)) -> Image.Image:
    """A smooth random image (noise upsampled), so JPEG sizes vary like real photos and not wildly."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _write(path: Path, img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "JPEG":
        img.save(path, "JPEG", quality=quality)
    else:
        img.save(path, fmt)
    return path


def _samples(root: Path, name: str = "tiny") -> Samples:
    """A samples table over root/{split}/{real,fake}/* built here (sha1 of the bytes), as a reader would."""
    rows = []
    for split in ("train", "test"):
        for cls, label in (("real", 0), ("fake", 1)):
            for p in sorted((root / split / cls).glob("*")):
                sha1 = hashlib.sha1(p.read_bytes()).hexdigest()
                rows.append((f"{split}/{cls}/{p.name}", str(p), label, split, "", sha1))
    return Samples(pd.DataFrame(rows, columns=SAMPLE_COLUMNS), name=name)


def _clean(root: Path, n_train: int = 40, n_test: int = 12) -> Path:
    """Both classes drawn from the same process: same format, size, quality, similar file sizes."""
    seed = 0
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("real", "fake"):
            for i in range(n):
                _write(root / split / cls / f"{i:03d}.jpg", _image(seed))
                seed += 1
    return root


def _copy(root: Path, src: str, dst: str) -> None:
    (root / dst).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / src, root / dst)


# ----------------------------------------------------------------------------- planted defects


def test_clean_data_raises_no_warning(tmp_path: Path) -> None:
    report = audit_samples(_samples(_clean(tmp_path)))
    assert report.warnings == []
    m = report.metrics()
    assert (m["n_train"], m["n_test"], m["n_real"], m["n_fake"]) == (80, 24, 52, 52)
    assert m["dup_extra"] == 0 and m["leak_test_rows"] == 0 and m["label_conflict_groups"] == 0
    assert report.shortcuts["auc"].max() < 0.8
    assert report.counts.loc["train", "real"] == 40 and report.counts.loc["total", "total"] == 104
    # no duplicates: still the columns a non-empty table has, so callers can read report.duplicates["n"]
    assert report.duplicates.columns.tolist() == ["split", "label", "sha1", "n", "ids", "paths"]
    # one value shared by both classes carries no information at all
    assert report.shortcuts.set_index("attribute").loc["format", "auc"] == 0.5


def test_within_class_duplicates_counted_as_extra_copies(tmp_path: Path) -> None:
    root = _clean(tmp_path)
    _copy(root, "train/fake/000.jpg", "train/fake/dup_a.jpg")
    _copy(root, "train/fake/000.jpg", "train/fake/dup_b.jpg")  # three copies of one file: 2 extra
    _copy(root, "train/real/005.jpg", "train/real/dup_c.jpg")
    _copy(root, "test/fake/001.jpg", "test/fake/dup_d.jpg")
    report = audit_samples(_samples(root))
    assert report.extra_duplicates("train", 1) == 2
    assert report.extra_duplicates("train", 0) == 1
    assert report.extra_duplicates("test", 1) == 1
    assert report.extra_duplicates("test", 0) == 0
    assert sorted(report.duplicates["n"].tolist()) == [2, 2, 3]
    assert report.metrics()["dup_extra"] == 4
    assert len(report.label_conflicts) == 0 and len(report.leaks) == 0
    (warning,) = report.warnings
    assert warning.startswith("exact duplicates: 4 extra copies") and "train/fake 2" in warning
    assert "dup_a.jpg" in report.to_markdown()


def test_label_conflict_found(tmp_path: Path) -> None:
    root = _clean(tmp_path)
    _copy(root, "train/real/003.jpg", "train/fake/looks_fake.jpg")
    report = audit_samples(_samples(root))
    (conflict,) = report.label_conflicts.itertuples()
    assert (conflict.n_real, conflict.n_fake) == (1, 1)
    assert sorted(Path(p).name for p in conflict.paths) == ["003.jpg", "looks_fake.jpg"]
    assert report.metrics()["label_conflict_rows"] == 2
    assert any(w.startswith("label conflicts: 1 files (2 rows)") for w in report.warnings)
    assert report.extra_duplicates("train", 0) == 0 and report.extra_duplicates("train", 1) == 0


def test_train_test_leak_found(tmp_path: Path) -> None:
    root = _clean(tmp_path)
    _copy(root, "train/fake/007.jpg", "test/fake/leaked.jpg")
    _copy(root, "train/real/002.jpg", "test/real/leaked.jpg")
    report = audit_samples(_samples(root))
    assert sorted(report.leaks["id"]) == ["test/fake/leaked.jpg", "test/real/leaked.jpg"]
    assert report.leaks.set_index("id").loc["test/fake/leaked.jpg", "train_ids"] == ["train/fake/007.jpg"]
    assert report.metrics()["leak_test_rows"] == 2
    assert report.warnings == [
        "train->test leakage: 2 test rows are byte-identical to train rows (real 1, fake 1)"
    ]
    assert report.metrics()["dup_extra"] == 0  # a copy across splits is a leak, not a duplicate
    # splits in reading order (train before test), not alphabetical
    assert report.counts.index.tolist() == ["train", "test", "total"]


def test_leak_test_rows_counts_rows_not_distinct_images(tmp_path: Path) -> None:
    """Three test rows copy one train image: three leaked rows (one leaked image)."""
    root = _clean(tmp_path)
    for name in ("a", "b", "c"):
        _copy(root, "train/fake/007.jpg", f"test/fake/leak_{name}.jpg")
    report = audit_samples(_samples(root))
    assert report.leaks["sha1"].nunique() == 1
    assert report.metrics()["leak_test_rows"] == 3
    assert any("train->test leakage: 3 test rows" in w for w in report.warnings)


def test_format_shortcut_warned(tmp_path: Path) -> None:
    # real photos as PNG, generated ones as JPEG: the file format alone gives the label away
    for i in range(30):
        _write(tmp_path / "train" / "real" / f"{i}.png", _image(i), fmt="PNG")
        _write(tmp_path / "train" / "fake" / f"{i}.jpg", _image(100 + i))
    report = audit_samples(_samples(tmp_path))
    by = report.shortcuts.set_index("attribute")
    assert by.loc["format", "auc"] == pytest.approx(1.0)
    assert bool(by.loc["format", "warn"])
    warning = next(w for w in report.warnings if "'format'" in w)
    assert "real mostly PNG (100%)" in warning and "fake mostly JPEG (100%)" in warning
    # the fix re-encodes at the lowest quality found in the data (90 here), not the no-JPEG default 96
    assert warning.endswith(
        "set data.align='{format: jpeg, quality: 90}' to re-encode every image "
        "the same way before any encoder sees it"
    )
    assert report.distributions()["format"].loc["PNG", "real"] == 30


def test_many_unique_sizes_are_not_a_shortcut_but_one_fake_size_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(20, 60, size=(80, 2))
    for i in range(40):  # every image its own size, in both classes: nothing to learn from size
        _write(tmp_path / "a" / "train" / "real" / f"{i}.jpg", _image(i, tuple(sizes[i])))
        _write(tmp_path / "a" / "train" / "fake" / f"{i}.jpg", _image(50 + i, tuple(sizes[40 + i])))
    report = audit_samples(_samples(tmp_path / "a"))
    assert report.shortcuts.set_index("attribute").loc["size", "auc"] < 0.8
    assert not any("'size'" in w for w in report.warnings)

    for i in range(40):  # generated images all 32x32, photos of many sizes: a real shortcut
        _write(tmp_path / "b" / "train" / "real" / f"{i}.jpg", _image(i, tuple(sizes[i])))
        _write(tmp_path / "b" / "train" / "fake" / f"{i}.jpg", _image(50 + i, (32, 32)))
    report = audit_samples(_samples(tmp_path / "b"))
    assert report.shortcuts.set_index("attribute").loc["size", "auc"] >= 0.95
    assert any("'size'" in w and "fake mostly 32x32 (100%)" in w for w in report.warnings)


def test_shortcut_threshold_is_configurable(tmp_path: Path) -> None:
    root = _clean(tmp_path)
    report = audit_samples(_samples(root), shortcut_auc=0.5)
    assert report.shortcuts["warn"].all() == (report.shortcuts["auc"] >= 0.5).all()
    assert any(w.startswith("shortcut: 'format'") for w in report.warnings)
    with pytest.raises(FidBenchError, match="shortcut_auc must be in"):
        audit_samples(_samples(root), shortcut_auc=1.5)


def test_unreadable_rows_counted_with_reasons(tmp_path: Path) -> None:
    root = _clean(tmp_path, n_train=10, n_test=2)
    samples = _samples(root)
    # a file that changed after the reader hashed it, and rows the reader already skipped
    (root / "train" / "real" / "000.jpg").write_bytes(b"not an image any more")
    samples.skipped = pd.DataFrame(
        [("x1", str(root / "x1.jpg"), "train", "truncated"), ("x2", "", "train", "missing_file")],
        columns=SKIP_COLUMNS,
    )
    report = audit_samples(samples)
    reasons = report.unreadable.set_index("id")["reason"]
    assert reasons["x1"] == "truncated" and reasons["x2"] == "missing_file"
    assert reasons["train/real/000.jpg"].startswith("header unreadable")
    assert report.metrics()["n_unreadable"] == 3
    assert any(w.startswith("skipped or unreadable: 3 rows") for w in report.warnings)
    # the broken file is left out of the attribute statistics, not counted as a category
    assert report.shortcuts.set_index("attribute").loc["format", "n"] == 23


# ----------------------------------------------------------------------------- near-duplicates


def test_near_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=60, dtype=np.int64).astype(np.uint64)
    # add close variants: flip 1..6 random bits of some hashes
    variants = []
    for i in range(40):
        h = int(base[i % 60])
        for b in rng.choice(64, size=rng.integers(1, 7), replace=False):
            h ^= 1 << int(b)
        variants.append(h)
    hashes = np.concatenate([base, np.array(variants, dtype=np.uint64)])
    for threshold in (0, 2, 4, 7):
        dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
        i, j = np.nonzero(np.triu(dist <= threshold, k=1))
        expected = {(int(a), int(b)) for a, b in zip(i, j, strict=True)}
        assert {tuple(p) for p in near_pairs(hashes, threshold).tolist()} == expected
        if threshold == 4:
            assert len(expected) > 10  # the test would be empty otherwise


def test_near_duplicates_found_only_when_asked(tmp_path: Path) -> None:
    root = _clean(tmp_path, n_train=20, n_test=5)
    # the same picture re-encoded at another quality and slightly brightened: new bytes, same image
    img = _image(1000, (64, 64))
    _write(root / "train" / "fake" / "orig.jpg", img, quality=95)
    near = Image.fromarray(np.clip(np.asarray(img).astype(int) + 3, 0, 255).astype(np.uint8))
    _write(root / "test" / "fake" / "near.jpg", near, quality=70)
    samples = _samples(root)

    assert audit_samples(samples).near_duplicates is None
    report = audit_samples(samples, near_dup_threshold=4)
    groups = report.near_duplicates
    hit = groups[groups["paths"].map(lambda ps: any(p.endswith("orig.jpg") for p in ps))]
    assert len(hit) == 1
    assert sorted(Path(p).name for p in hit.iloc[0]["paths"]) == ["near.jpg", "orig.jpg"]
    assert report.near_dup_leak_rows >= 1
    assert report.metrics()["near_dup_leak_test_rows"] == report.near_dup_leak_rows
    assert any(w.startswith("near-duplicate leakage") for w in report.warnings)
    assert len(report.leaks) == 0  # different bytes: not an exact leak
    with pytest.raises(FidBenchError, match="Hamming distance in 0..32"):
        audit_samples(samples, near_dup_threshold=64)


def test_hash_collisions_between_unrelated_images_are_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _clean(tmp_path, n_train=5, n_test=2)
    img = _image(1000, (64, 64))
    _write(root / "train" / "fake" / "orig.jpg", img, quality=95)
    _write(root / "train" / "fake" / "edit.jpg", img.crop((2, 2, 62, 62)).resize((64, 64)), quality=80)
    # the worst case for a 64-bit hash: every image hashes the same
    monkeypatch.setattr(hashing, "perceptual_hash", lambda path: 12345)
    report = audit_samples(_samples(root), near_dup_threshold=0)
    (group,) = report.near_duplicates.itertuples()
    assert sorted(Path(p).name for p in group.paths) == ["edit.jpg", "orig.jpg"]
    assert not any(w.startswith("near-duplicates:") for w in report.warnings)


def test_confirm_pairs_keeps_only_agreeing_thumbnails(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.png", _image(5, (32, 32)), fmt="PNG")
    b = _write(tmp_path / "b.png", _image(6, (32, 32)), fmt="PNG")
    a_dark = _write(tmp_path / "a_dark.png", Image.eval(_image(5, (32, 32)), lambda v: v // 2), fmt="PNG")
    flat1 = _write(tmp_path / "f1.png", Image.new("RGB", (32, 32), (90, 90, 90)), fmt="PNG")
    flat2 = _write(tmp_path / "f2.png", Image.new("RGB", (32, 32), (92, 92, 92)), fmt="PNG")
    flat3 = _write(tmp_path / "f3.png", Image.new("RGB", (32, 32), (200, 200, 200)), fmt="PNG")
    paths = [str(p) for p in (a, b, a_dark, flat1, flat2, flat3)]
    pairs = np.array([[0, 1], [0, 2], [3, 4], [3, 5], [0, 3]])
    kept = hashing.confirm_pairs(pairs, paths)
    assert kept.tolist() == [[0, 2], [3, 4]]  # darkened copy and two near-equal flat greys


def test_perceptual_hash_is_stable_under_recompression_and_differs_between_images(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jpg", _image(1, (48, 48)), quality=95)
    a2 = _write(tmp_path / "a2.jpg", _image(1, (48, 48)), quality=60)
    b = _write(tmp_path / "b.jpg", _image(2, (48, 48)), quality=95)
    ha, ha2, hb = (hashing.perceptual_hash(str(p)) for p in (a, a2, b))
    assert bin(ha ^ ha2).count("1") <= 4
    assert bin(ha ^ hb).count("1") >= 16
    assert 0 <= ha < 2**64


# ----------------------------------------------------------------------------- cache and workers


def test_header_cache_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _clean(tmp_path / "data", n_train=6, n_test=2)
    first = audit_samples(_samples(root), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "audit").glob("headers-v*.parquet"))

    def fail(path: str) -> tuple:
        raise AssertionError(f"header read again: {path}")

    monkeypatch.setattr(headers, "read_header", fail)
    second = audit_samples(_samples(root), cache_dir=tmp_path / "cache")
    cols = ["id", "format", "size", "jpeg_quality", "file_size"]
    pd.testing.assert_frame_equal(first.attributes[cols], second.attributes[cols])


def test_worker_processes_give_the_same_attributes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _clean(tmp_path, n_train=6, n_test=2)
    serial = audit_samples(_samples(root))
    monkeypatch.setattr(scan, "PARALLEL_MIN", 1)
    monkeypatch.setattr(scan, "CHUNK_SIZE", 5)
    parallel = audit_samples(_samples(root), workers=2)
    cols = ["id", "format", "size", "mode", "jpeg_quality", "jpeg_qtables", "file_size"]
    pd.testing.assert_frame_equal(serial.attributes[cols], parallel.attributes[cols])


# ----------------------------------------------------------------------------- --fix


def test_clean_manifest_removes_conflicts_leaks_and_extra_copies(tmp_path: Path) -> None:
    root = _clean(tmp_path, n_train=10, n_test=4)
    _copy(root, "train/fake/000.jpg", "train/fake/000_copy.jpg")  # duplicate: keep one
    _copy(root, "train/real/001.jpg", "train/fake/conflict.jpg")  # conflict: drop both
    _copy(root, "train/fake/002.jpg", "test/fake/leak.jpg")  # leak: drop the test copy
    samples = _samples(root)
    predict = pd.DataFrame(
        [("p1", str(root / "train/fake/002.jpg"), -1, "predict", "", samples.table["sha1"].iloc[-1])],
        columns=SAMPLE_COLUMNS,
    )
    samples.table = pd.concat([samples.table, predict, predict.assign(id="p2")], ignore_index=True)
    manifest, removed = clean_manifest(samples, audit_samples(samples))
    reasons = removed.set_index("id")["reason"]
    assert reasons["train/fake/000_copy.jpg"].startswith("duplicate")
    assert reasons["train/fake/conflict.jpg"] == reasons["train/real/001.jpg"] == "label conflict"
    assert reasons["test/fake/leak.jpg"].startswith("leak")
    assert len(removed) == 4
    assert len(manifest) == len(samples.table) - 4
    assert {"train/fake/000.jpg", "train/fake/002.jpg", "p1", "p2"} <= set(manifest["id"])  # predict kept
    assert list(manifest.columns) == ["id", "path", "label", "split"]
    # the cleaned table audits clean
    kept = samples.table[samples.table["id"].isin(manifest["id"])]
    again = audit_samples(Samples(kept, name="fixed"))
    assert again.metrics()["dup_extra"] == 1  # the two identical predict rows stay, by design
    assert again.metrics()["label_conflict_groups"] == 0 and again.metrics()["leak_test_rows"] == 0
    assert all((root / p).exists() for p in removed["path"])  # images untouched


# ----------------------------------------------------------------------------- command line


def _kaggle_style(root: Path, real_quality: int, fake_quality: int, n: int = 30) -> Path:
    """A generated-or-not-style folder: train.csv (id,target) + images/."""
    rows = ["id,target"]
    for i in range(n):
        for label, quality in ((0, real_quality), (1, fake_quality)):
            name = f"{label}_{i:03d}.jpg"
            _write(root / "images" / name, _image(i * 2 + label), quality=quality)
            rows.append(f"{name},{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def test_cli_warns_about_jpeg_quality_shortcut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _kaggle_style(tmp_path / "gon", real_quality=95, fake_quality=75)
    out_json = tmp_path / "report" / "audit.json"
    code = main(["data=kaggle", f"data.root={root}", "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "shortcut: 'jpeg_quality' alone separates real from generated (ROC-AUC 1.000" in printed
    assert "real median 95, fake median 75" in printed
    report = json.loads(out_json.read_text())
    by = {r["attribute"]: r for r in report["shortcuts"]}
    assert by["jpeg_quality"]["auc"] == pytest.approx(1.0) and by["jpeg_quality"]["warn"]
    assert not by["format"]["warn"] and not by["size"]["warn"]
    assert report["distributions"]["jpeg_quality"]["fake"]["50%"] == 75
    assert main(["data=kaggle", f"data.root={root}", "--strict"]) == 1


def test_cli_same_quality_no_warning_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _kaggle_style(tmp_path / "gon", real_quality=90, fake_quality=90)
    shutil.copyfile(root / "images" / "1_000.jpg", root / "images" / "1_dup.jpg")
    with (root / "train.csv").open("a") as f:
        f.write("1_dup.jpg,1\n")
    out = tmp_path / "clean.csv"
    code = main(["data=kaggle", f"data.root={root}", "--fix", str(out), "--strict", "audit.shortcut_auc=0.9"])
    printed = capsys.readouterr().out
    assert code == 1  # the duplicate is a warning
    assert "shortcut: '" not in printed
    assert "(warning at >= 0.9;" in printed  # the audit.* override reached the audit
    manifest = pd.read_csv(out)
    assert len(manifest) == 60 and "1_dup.jpg" not in set(manifest["id"])
    assert "1_000.jpg" in set(manifest["id"])  # the first copy by path stays
    removed = pd.read_csv(out.with_name("clean.removed.csv"))
    assert removed["id"].tolist() == ["1_dup.jpg"]
    assert "removed      1 train/fake: duplicate" in printed


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a user error (config, data set) exits 1, like the other commands; only bad arguments exit 2
    assert main(["data=folder"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "fid-bench audit: error: config: data.root is required (e.g. data.root=/path/to/data)"
    )
    assert main(["data=nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fid-bench audit: error: config:") and "data/nope" in err and "\n" not in err
    assert main(["data=folder", f"data.root={tmp_path / 'absent'}"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["data=demo", "audit.shortcut_auc=1.5"]) == 1  # out of range in the config: a user error
    assert "shortcut_auc must be in [0.5, 1]" in capsys.readouterr().err
    assert main(["data=demo", "--near-dup-threshold", "99"]) == 2  # out of range as a flag: a bad argument
    err = capsys.readouterr().err
    assert "Hamming distance in 0..32" in err and err.count("\n") == 1
    assert main(["data=demo", "--workers", "two"]) == 2
    assert capsys.readouterr().err.startswith("fid-bench audit: error: argument --workers")


def test_audit_from_config_uses_the_run_settings(compose_cfg, tmp_path: Path) -> None:
    root = _clean(tmp_path / "d", n_train=5, n_test=2)
    cfg = compose_cfg("data=folder", f"data.root={root}", "audit.shortcut_auc=0.55", tiny=False)
    settings = audit_settings(cfg)
    assert settings["shortcut_auc"] == 0.55 and settings["near_dup_threshold"] is None
    assert settings["workers"] == 1 and settings["cache_dir"] == tmp_path / "cache"
    report = audit_from_config(_samples(root), cfg)
    assert report.shortcut_auc == 0.55
    paths = report.write(tmp_path / "out")
    assert [p.name for p in paths] == ["audit.md", "audit.json"]
    assert paths[0].read_text().startswith("# Data audit: tiny")


# ----------------------------------------------------------------------------- JPEG quality


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 90, 98, 100])
def test_jpeg_quality_estimated_from_tables(tmp_path: Path, quality: int) -> None:
    path = _write(tmp_path / "q.jpg", _image(0), quality=quality)
    with Image.open(path) as img:
        assert estimate_quality(img.quantization) == quality
        assert table_distance(img.quantization[0]) == (quality, 0)
    assert headers.read_header(str(path))[4] == quality


def test_jpeg_quality_nearest_for_custom_tables() -> None:
    custom = ijg_table(80).copy()
    custom[:8] += 1  # an encoder with its own tweak of the quality-80 table
    assert table_distance(custom) == (80, 8)
    assert estimate_quality({}) is None
    with pytest.raises(ValueError):
        ijg_table(0)


def test_header_of_png_and_garbage(tmp_path: Path) -> None:
    png = _write(tmp_path / "a.png", _image(0).convert("RGBA"), fmt="PNG")
    fmt, w, h, mode, quality, qtables, _, size, error = headers.read_header(str(png))
    assert (fmt, w, h, mode, qtables, error) == ("PNG", 24, 24, "RGBA", "", "")
    assert np.isnan(quality) and size == png.stat().st_size
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 garbage")
    assert headers.read_header(str(bad))[-1].startswith("header unreadable")


# ----------------------------------------------------------------------------- CIFAKE


# files of the public release with known defects (see ../shared/data/README.md)
CIFAKE_DEFECTS = {
    "train/FAKE/1699 (3).jpg": "train dup",
    "train/FAKE/2117 (3).jpg": "train dup",
    "test/FAKE/434 (3).jpg": "test dup",
    "test/FAKE/799 (3).jpg": "test dup",
    "test/FAKE/0 (7).jpg": "leak",
    "train/FAKE/3052 (7).jpg": "leak source",
}


@pytest.fixture(scope="module")
def cifake_subset(tmp_path_factory: pytest.TempPathFactory, cifake_archive: Path) -> Path:
    """The defect files above plus the first 40 members of each class folder, extracted from the archive."""
    root = tmp_path_factory.mktemp("cifake")
    taken: dict[str, int] = {}
    with tarfile.open(cifake_archive) as tf:
        for member in tf:
            if not member.isfile():
                continue
            folder = member.name.rsplit("/", 1)[0]
            if member.name in CIFAKE_DEFECTS or taken.get(folder, 0) < 40:
                taken[folder] = taken.get(folder, 0) + 1
                target = root / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tf.extractfile(member).read())
            if (
                len(taken) == 4
                and min(taken.values()) >= 40
                and all((root / n).exists() for n in CIFAKE_DEFECTS)
            ):
                break  # test/REAL comes last in the archive: stop once it has its share
    missing = [n for n in CIFAKE_DEFECTS if not (root / n).exists()]
    assert not missing, f"archive lacks {missing}"
    return root


def test_cifake_subset_defects_found_and_no_format_shortcut(
    cifake_subset: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json = tmp_path / "audit.json"
    assert main(["data=folder", f"data.root={cifake_subset}", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    extra = {(r["split"], r["class"]): r["extra"] for r in report["duplicate_summary"]}
    assert extra[("train", "fake")] >= 1 and extra[("test", "fake")] >= 1
    assert extra[("train", "real")] == 0 and extra[("test", "real")] == 0
    dup_pairs = [sorted(Path(p).name for p in g["paths"]) for g in report["duplicates"]]
    assert ["1699 (3).jpg", "2117 (3).jpg"] in dup_pairs and ["434 (3).jpg", "799 (3).jpg"] in dup_pairs
    leak_ids = {r["id"] for r in report["leaks"]}
    assert "test/FAKE/0 (7).jpg" in leak_ids
    assert report["metrics"]["label_conflict_groups"] == 0
    by = {r["attribute"]: r for r in report["shortcuts"]}
    for attr in ("format", "size", "mode", "jpeg_qtables", "jpeg_quality", "jpeg_subsampling"):
        assert not by[attr]["warn"], attr
    assert "shortcut:" not in printed
    # both classes use the very same quantisation tables (quality 75)
    assert set(report["distributions"]["jpeg_quality"]) == {"real", "fake"}
    assert report["distributions"]["jpeg_quality"]["real"]["50%"] == 75
    assert len(report["distributions"]["jpeg_qtables"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)  # unpacking and hashing 120k files on a busy 2-core CPU
def test_cifake_full_release_figures(
    cifake_unpacked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole release (unpacked once by the session fixture): 920 + 38 extra copies, 378 leaks, no shortcut."""
    out_json = tmp_path / "audit.json"
    assert (
        main(["data=folder", f"data.root={cifake_unpacked}", "--json", str(out_json), "--workers", "2"]) == 0
    )
    report = json.loads(out_json.read_text())
    extra = {(r["split"], r["class"]): r["extra"] for r in report["duplicate_summary"]}
    assert extra == {("train", "fake"): 920, ("test", "fake"): 38, ("train", "real"): 0, ("test", "real"): 0}
    m = report["metrics"]
    assert m["leak_test_rows"] == 378 and m["label_conflict_groups"] == 0
    assert {r["split"] for r in report["leaks"]} == {"test"}
    assert m["n_rows"] == 120000
    assert not any(r["warn"] for r in report["shortcuts"])
    assert len(report["distributions"]["jpeg_qtables"]) == 1  # one table set shared by both classes
    capsys.readouterr()
    print(f"audit of 120k CIFAKE files: {report['elapsed_s']:.1f} s")


def test_tiny_markdown_is_complete(tmp_path: Path) -> None:
    root = _clean(tmp_path, n_train=5, n_test=2)
    _copy(root, "train/fake/000.jpg", "test/fake/leak.jpg")
    md = audit_samples(_samples(root)).to_markdown()
    for heading in (
        "## Warnings",
        "## Counts",
        "## Exact duplicates",
        "### Leaks",
        "## Attributes and shortcuts",
    ):
        assert heading in md
    assert "| test | fake | 1 |" in md
    assert "`" + str(root / "test/fake/leak.jpg") + "`" in md


def test_empty_and_one_class_tables_report_instead_of_failing(tmp_path: Path) -> None:
    empty = audit_samples(Samples(pd.DataFrame(columns=SAMPLE_COLUMNS), name="empty"))
    assert empty.warnings == ["the data set has no rows"]
    assert "| total | 0 | 0 | 0 | 0 |" in empty.to_markdown()
    json.dumps(empty.to_dict())

    for i in range(5):
        _write(tmp_path / "train" / "fake" / f"{i}.jpg", _image(i))
    only_fake = audit_samples(_samples(tmp_path))
    assert only_fake.warnings == ["only one class among the labelled rows: nothing to separate"]
    assert only_fake.shortcuts["auc"].isna().all() and not only_fake.shortcuts["warn"].any()
    assert "shortcut_auc_format" not in only_fake.metrics()
