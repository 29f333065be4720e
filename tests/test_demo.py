"""Demo data: deterministic, atomic, regenerated on a parameter change, learnable from the spectrum
and not from trivial global statistics."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fid_bench.data import demo
from fid_bench.data.demo import MANIFEST, ensure_demo
from fid_bench.errors import FidBenchError
from tests.conftest import CONF_DIR


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("demo") / "set"
    start = time.perf_counter()
    ensure_demo(root)
    return root, time.perf_counter() - start


@pytest.fixture(scope="module")
def images(default_set: tuple[Path, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels [N, H, W, 3] float in 0..1, labels, file sizes) of the labelled rows."""
    root = default_set[0]
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    files = [root / "images" / f"{i}.png" for i in train["id"]]
    pixels = np.stack([np.asarray(Image.open(f), dtype=np.float64) / 255.0 for f in files])
    sizes = np.array([f.stat().st_size for f in files], dtype=np.float64)
    return pixels, train["target"].astype(int).to_numpy(), sizes


def cv_auc(features: np.ndarray, labels: np.ndarray, model: object = None) -> float:
    if model is None:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, features, labels, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def log_spectrum_profile(img: np.ndarray) -> np.ndarray:
    """Azimuthal average of the log power spectrum of the grey image (one value per radius)."""
    grey = img.mean(axis=2)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    n = grey.shape[0]
    yy, xx = np.indices(power.shape)
    radius = np.hypot(yy - n // 2, xx - n // 2).astype(int).ravel()
    return np.bincount(radius, np.log(power.ravel() + 1e-8)) / np.bincount(radius)


def test_layout_counts_and_shared_format(default_set: tuple[Path, float]) -> None:
    root, _ = default_set
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["n_real"] == 300 and manifest["n_fake"] == 100 and manifest["size"] == 64
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    assert list(train.columns) == ["id", "target", "group"]
    assert train["target"].value_counts().to_dict() == {"0": 300, "1": 100}
    assert set(train.loc[train["target"] == "0", "group"]) == {""}
    assert set(train.loc[train["target"] == "1", "group"]) == {
        "upsample_x2",
        "upsample_x4",
        "upsample_smooth",
    }
    test = pd.read_csv(root / "test.csv", dtype=str)
    solution = pd.read_csv(root / "solution.csv", dtype=str)
    assert len(test) == 20 and solution["id"].tolist() == test["id"].tolist()
    assert not set(test["id"]) & set(train["id"])
    files = sorted((root / "images").iterdir())
    assert len(files) == 420
    for f in files[::37]:
        with Image.open(f) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (64, 64))
    # ids carry no hint of the label: the fakes are spread over the id range
    fake_ids = sorted(train.loc[train["target"] == "1", "id"])
    assert fake_ids[0] < sorted(train["id"])[20] and fake_ids[-1] > sorted(train["id"])[-20]


def test_learnable_from_spectrum_by_trees_not_by_a_linear_model(
    images: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    from PIL import Image
    from sklearn.ensemble import RandomForestClassifier

    from fid_bench.features.spectrum import SpectrumEncoder

    pixels, labels, _ = images
    # the default (hard) set teaches something: the frequency features carry the trace, but the
    # generated images sit on both sides of the real ones (over-smoothed and over-sharpened), so a
    # forest finds it and a linear model only half does; the demo grid's spread comes from this
    encoder = SpectrumEncoder()
    features = np.concatenate(
        [
            encoder.encode([encoder.transform(Image.fromarray(np.rint(img * 255).astype(np.uint8)))])
            for img in pixels
        ]
    )
    forest = cv_auc(features, labels, RandomForestClassifier(n_estimators=200, random_state=0))
    linear = cv_auc(features, labels)
    assert forest > 0.75 and 0.55 < linear < forest - 0.1, (forest, linear)
    profile = np.stack([log_spectrum_profile(img) for img in pixels])
    assert cv_auc(profile, labels, RandomForestClassifier(n_estimators=200, random_state=0)) > 0.6


def test_easy_set_is_separable_by_a_linear_model(tmp_path: Path) -> None:
    from PIL import Image

    from fid_bench.features.spectrum import SpectrumEncoder

    root = ensure_demo(tmp_path / "easy", n_real=60, n_fake=60, n_predict=0, size=64, difficulty="easy")
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    encoder = SpectrumEncoder()
    features = np.concatenate(
        [
            encoder.encode([encoder.transform(Image.open(root / "images" / f"{i}.png").convert("RGB"))])
            for i in train["id"]
        ]
    )
    assert set(train["group"]) == {"", "upsample_x2", "upsample_x4"}  # no smoothing generator
    assert cv_auc(features, train["target"].astype(int).to_numpy()) > 0.9


def test_not_separable_by_trivial_statistics(images: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pixels, labels, sizes = images
    colour = np.concatenate([pixels.mean(axis=(1, 2)), pixels.std(axis=(1, 2))], axis=1)
    auc = cv_auc(colour, labels)
    assert max(auc, 1 - auc) < 0.65
    size_auc = roc_auc_score(labels, sizes)
    assert max(size_auc, 1 - size_auc) < 0.65


def test_deterministic_and_seeded(tmp_path: Path) -> None:
    params = {"n_real": 12, "n_fake": 6, "n_predict": 3, "size": 32}
    a = tree_digest(ensure_demo(tmp_path / "a", seed=5, **params))
    b = tree_digest(ensure_demo(tmp_path / "b", seed=5, **params))
    c = tree_digest(ensure_demo(tmp_path / "c", seed=6, **params))
    assert a == b
    assert {k: v for k, v in a.items() if k.startswith("images/")} != {
        k: v for k, v in c.items() if k.startswith("images/")
    }


def test_reused_then_regenerated_on_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    root = work / "d"
    ensure_demo(root, n_real=10, n_fake=5, n_predict=2, size=32)
    before = tree_digest(root)

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated although the parameters did not change")

    with monkeypatch.context() as m:
        m.setattr(demo, "_generate", refuse)
        ensure_demo(root, n_real=10, n_fake=5, n_predict=2, size=32)
    assert tree_digest(root) == before

    ensure_demo(root, n_real=10, n_fake=7, n_predict=2, size=32)
    train = pd.read_csv(root / "train.csv")
    assert (train["target"] == 1).sum() == 7
    assert json.loads((root / MANIFEST).read_text())["n_fake"] == 7
    assert sorted(p.name for p in work.iterdir() if not p.name.endswith(".lock")) == ["d"]  # no leftovers

    # a folder without a (matching) manifest is not trusted: it is replaced
    (root / MANIFEST).unlink()
    (root / "images" / "stray.png").write_bytes(b"junk")
    ensure_demo(root, n_real=10, n_fake=7, n_predict=2, size=32)
    assert not (root / "images" / "stray.png").exists()
    assert json.loads((root / MANIFEST).read_text())["n_fake"] == 7


def test_failed_generation_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_render = demo.render_image
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("disk full")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(demo, "render_image", flaky)
    work = tmp_path / "work"
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_demo(work / "d", n_real=10, n_fake=5, size=32)
    assert not (work / "d").exists()
    assert [p.name for p in work.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_jobs_share_one_set(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    errors: list[BaseException] = []
    seen: list[dict[str, str]] = []

    def job() -> None:
        try:
            ensure_demo(root, n_real=20, n_fake=10, n_predict=0, size=32)
            seen.append(tree_digest(root))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]
    assert len([k for k in seen[0] if k.startswith("images/")]) == 30


def test_bad_parameters() -> None:
    with pytest.raises(FidBenchError, match="multiple of 4"):
        ensure_demo("/nonexistent/demo", size=30)
    with pytest.raises(FidBenchError, match="n_fake >= 1"):
        ensure_demo("/nonexistent/demo", n_fake=0)


def test_demo_reader_from_config(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=demo",
                f"features.cache_dir={tmp_path / 'cache'}",
                "data.reader.n_real=24",
                "data.reader.n_fake=8",
                "data.reader.size=32",
            ],
        )
    assert cfg.data.root == str(tmp_path / "cache" / "demo_data")
    samples = instantiate(cfg.data.reader).read()
    table = samples.table
    assert samples.name == "demo"
    assert table.groupby(["split", "label"]).size().to_dict() == {
        ("predict", -1): 20,
        ("train", 0): 24,
        ("train", 1): 8,
    }
    assert len(samples.skipped) == 0 and len(samples.unreadable_predict) == 0
    train = table[table["split"] == "train"]
    assert set(train.loc[train["label"] == 1, "group"]) <= {"upsample_x2", "upsample_x4", "upsample_smooth"}
    assert (train.loc[train["label"] == 0, "group"] == "").all()
    assert train["sha1"].str.len().eq(40).all() and train["sha1"].is_unique
    assert all(Path(p).is_file() and Path(p).parent == Path(cfg.data.root) / "images" for p in table["path"])
