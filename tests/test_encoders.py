"""Encoders: identity (stable, sensitive, torch-free), the spectrum features, frozen timm and open_clip towers."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones.open_clip import OpenClipBackbone
from fid_bench.backbones.timm import TimmBackbone
from fid_bench.errors import FidBenchError
from fid_bench.features.encoders import FrozenEncoder, build_encoder
from fid_bench.features.spectrum import SpectrumEncoder
from tests.conftest import CONF_DIR, REPO

TINY_CLIP = {
    "TinyViT-test": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
    "TinyRN-test": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Register two tiny open_clip architectures (open_clip ships none small enough for a test)."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in TINY_CLIP.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return list(TINY_CLIP)


def compose_encoder_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides)).model.backbone


def build(*overrides: str):
    return build_encoder(compose_encoder_cfg(*overrides))


def rgb(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def timm_encoder(model_name: str, *, amp: bool = True, init_seed: int = 0, **kwargs) -> FrozenEncoder:
    """A timm backbone, frozen (what ``model=resnet50 classifier=logreg`` builds)."""
    return FrozenEncoder(TimmBackbone(model_name, **kwargs), amp=amp, init_seed=init_seed)


def clip_encoder(arch: str, *args, amp: bool = True, init_seed: int = 0, **kwargs) -> FrozenEncoder:
    """An open_clip image tower, frozen (what ``model=clip_vit_b32`` builds)."""
    return FrozenEncoder(OpenClipBackbone(arch, *args, **kwargs), amp=amp, init_seed=init_seed)


# ----------------------------------------------------------------------------- identity
@pytest.mark.parametrize("model", ["spectrum", "resnet50", "vit_b16", "clip_vit_b32", "clip_vit_l14"])
def test_configs_build_their_encoder_with_a_stable_identity(model: str) -> None:
    a, b = build(f"model={model}"), build(f"model={model}")
    if model == "spectrum":
        assert isinstance(a, SpectrumEncoder)
    else:
        expected = TimmBackbone if model in ("resnet50", "vit_b16") else OpenClipBackbone
        assert isinstance(a, FrozenEncoder) and isinstance(a.backbone, expected)
    assert a.identity == b.identity
    assert a.identity != build(f"model={model}", "data.image_size=96").identity


def test_identity_follows_everything_outputs_depend_on(tmp_path: Path) -> None:
    base = timm_encoder("resnet50", pretrained=True)
    variants = {
        "model": timm_encoder("resnet18", pretrained=True),
        "random weights": timm_encoder("resnet50", pretrained=False),
        "init seed": timm_encoder("resnet50", pretrained=False, init_seed=1),
        "image size": timm_encoder("resnet50", pretrained=True, image_size=160),
        "open_clip": clip_encoder("ViT-B-32", "openai"),
        "tag": clip_encoder("ViT-B-32", "laion2b_s34b_b79k"),
        "spectrum": SpectrumEncoder(),
        "spectrum tiles": SpectrumEncoder(max_tiles=4),
        "spectrum size": SpectrumEncoder(image_size=32),
    }
    ids = {name: enc.identity for name, enc in variants.items()}
    ids["base"] = base.identity
    assert len(set(ids.values())) == len(ids), ids
    # the compute dtype: bf16 autocast on CUDA
    cuda = timm_encoder("resnet50", pretrained=True)
    cuda.prepare("cuda")
    assert cuda.compute_dtype == "bfloat16" and cuda.identity != base.identity
    no_amp = timm_encoder("resnet50", pretrained=True, amp=False)
    no_amp.prepare("cuda")
    assert no_amp.identity == base.identity
    # a local checkpoint is identified by its content, not its name
    ckpt = tmp_path / "a.pth"
    ckpt.write_bytes(b"weights v1")
    one = timm_encoder("resnet50", weights=str(ckpt)).identity
    ckpt.rename(tmp_path / "b.pth")
    assert timm_encoder("resnet50", weights=str(tmp_path / "b.pth")).identity == one
    (tmp_path / "b.pth").write_bytes(b"weights v2")
    assert timm_encoder("resnet50", weights=str(tmp_path / "b.pth")).identity != one
    # parameters that do not change outputs do not change the identity
    assert SpectrumEncoder(image_size=64).identity == SpectrumEncoder().identity


def test_identity_never_imports_torch() -> None:
    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from hydra import compose, initialize_config_dir
from fid_bench.features.encoders import build_encoder
with initialize_config_dir(config_dir={str(CONF_DIR)!r}, version_base="1.3"):
    for model in ("spectrum", "resnet50", "vit_b16", "clip_vit_b32", "clip_vit_l14"):
        enc = build_encoder(compose("config", overrides=["model=" + model]).model.backbone)
        assert enc.identity and enc.short
heavy = sorted(m for m in ("torch", "timm", "open_clip", "torchvision") if m in sys.modules)
print("heavy:", heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout


@pytest.mark.parametrize("bad", [0, -3, 2.5, "big"])
def test_bad_image_size_is_a_one_line_error(bad) -> None:
    for make in (SpectrumEncoder, lambda image_size: timm_encoder("resnet50", image_size=image_size)):
        with pytest.raises(FidBenchError, match="image_size"):
            make(image_size=bad)


# ----------------------------------------------------------------------------- spectrum
def test_spectrum_features_have_a_fixed_size_for_any_input() -> None:
    enc = SpectrumEncoder()
    names = enc.feature_names()
    assert len(names) == len(set(names)) == enc.dim
    imgs = [rgb(i, s) for i, s in enumerate([(32, 32), (5, 7), (17, 300), (640, 480), (64, 64), (65, 200)])]
    imgs.append(Image.new("RGB", (40, 40), (128, 128, 128)))  # a flat image
    imgs.append(rgb(9).convert("L").convert("RGB"))
    feats = [enc.features(im) for im in imgs]
    for f in feats:
        assert f.shape == (enc.dim,) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(enc.features(rgb(5, (65, 200))), feats[5])  # deterministic
    # the workers only cut uint8 tiles on the 8-pixel grid; no resampling above 16 px
    tiles = enc.transform(imgs[3])
    assert tiles.dtype == np.uint8 and tiles.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(tiles[0], np.asarray(imgs[3])[:64, :64])
    assert enc.transform(imgs[0]).shape == (1, 32, 32, 3) and enc.transform(imgs[1]).shape == (1, 16, 16, 3)
    # a batch of mixed sizes (a list) and a stacked batch give the one-at-a-time rows
    batch = enc.encode([enc.transform(im) for im in imgs])
    np.testing.assert_allclose(batch, np.stack(feats), rtol=1e-5, atol=1e-6)
    same = enc.encode(np.stack([enc.transform(rgb(i)) for i in range(5)]))
    np.testing.assert_allclose(same, np.stack([enc.features(rgb(i)) for i in range(5)]), rtol=1e-5, atol=1e-6)


def test_spectrum_features_respond_to_what_they_claim() -> None:
    enc = SpectrumEncoder()
    col = {n: i for i, n in enumerate(enc.feature_names())}
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    up = np.repeat(np.repeat(noise[::2, ::2], 2, axis=0), 2, axis=1)  # 2x nearest up-sampling
    f_noise, f_up = enc.features(Image.fromarray(noise)), enc.features(Image.fromarray(up))
    # up-sampling removes energy near Nyquist: the outer radial ring of the luma residual drops
    outer = col["radial_res_y_11"]
    assert f_up[outer] < f_noise[outer] - 1.0
    # colour moments are what they say
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    f_red = enc.features(Image.fromarray(red))
    assert f_red[col["rgb_mean_r"]] == pytest.approx(200 / 255, abs=1e-4)
    assert f_red[col["sat_mean"]] == pytest.approx(1.0, abs=1e-4)
    # a tile position on the 8-pixel grid: shifting a large image by 8 px keeps most features close
    big = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    a = enc.features(Image.fromarray(big))
    b = enc.features(Image.fromarray(np.roll(big, 8, axis=(0, 1))))
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_spectrum_separates_upsampled_from_camera_like_images() -> None:
    """A crude but real fingerprint (2x up-sampling plus a little noise) is found by a linear model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    enc = SpectrumEncoder()
    X, y = [], []
    for i in range(160):
        base = rng.normal(128, 40, (32, 32, 3)).cumsum(axis=1) / 6 + rng.normal(0, 6, (32, 32, 3))
        if i % 2:
            base = np.repeat(np.repeat(base[::2, ::2], 2, axis=0), 2, axis=1) + rng.normal(0, 2, (32, 32, 3))
        X.append(enc.features(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))))
        y.append(i % 2)
    X, y = np.stack(X), np.array(y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[:100], y[:100])
    assert roc_auc_score(y[100:], clf.predict_proba(X[100:])[:, 1]) > 0.95


@pytest.fixture(scope="module")
def cifake_subset(cifake_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Path]]:
    """The first 300 images of train/FAKE and train/REAL, extracted from the archive."""
    out = tmp_path_factory.mktemp("cifake")
    want = {"train/FAKE": 300, "train/REAL": 300}
    got: dict[int, list[Path]] = {0: [], 1: []}
    with tarfile.open(cifake_archive) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0]
            if member.isfile() and want.get(folder, 0) > 0:
                want[folder] -= 1
                tar.extract(member, out, filter="data")
                got[1 if folder.endswith("FAKE") else 0].append(out / member.name)
                if not any(want.values()):
                    break
    return got


def test_spectrum_logistic_regression_on_cifake(cifake_subset: dict[int, list[Path]]) -> None:
    """The CPU baseline on real data: 600 CIFAKE images, half to train, half to test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fid_bench.data.decode import load_rgb

    enc = SpectrumEncoder()
    rng = np.random.default_rng(0)
    items = [(p, label) for label, paths in cifake_subset.items() for p in paths]
    rng.shuffle(items)
    X = enc.encode([enc.transform(load_rgb(p)) for p, _ in items])
    y = np.array([label for _, label in items])
    half = len(y) // 2
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(X[:half], y[:half])
    auc = roc_auc_score(y[half:], clf.predict_proba(X[half:])[:, 1])
    assert auc > 0.85, auc


# ----------------------------------------------------------------------------- timm
@pytest.mark.parametrize(
    ("model_name", "image_size", "side"),
    [("test_resnet", None, 160), ("test_resnet", 48, 48), ("test_vit", None, 160), ("test_vit", 32, 32)],
)
def test_timm_test_models_give_pooled_features(model_name: str, image_size, side: int) -> None:
    enc = timm_encoder(model_name, pretrained=False, image_size=image_size)
    enc.prepare("cpu")
    enc.load()
    x = enc.transform(rgb(0, (50, 40)))
    assert tuple(x.shape) == (3, side, side)
    import torch

    feats = enc.encode(torch.stack([x, enc.transform(rgb(1))]))
    dim = enc._loaded_info["num_features"]
    assert feats.shape == (2, dim) and dim > 0 and feats.dtype == np.float32
    assert np.isfinite(feats).all() and not np.allclose(feats[0], feats[1])
    if model_name == "test_vit" and image_size:
        assert tuple(enc._model.patch_embed.img_size) == (image_size, image_size)


def test_random_init_is_reproducible_so_its_features_can_be_cached() -> None:
    import torch

    def feats(seed: int) -> np.ndarray:
        enc = timm_encoder("test_resnet", pretrained=False, init_seed=seed, image_size=32)
        enc.load()
        return enc.encode(torch.stack([enc.transform(rgb(i)) for i in range(3)]))

    a = feats(0)
    np.testing.assert_array_equal(a, feats(0))
    assert not np.allclose(a, feats(1))


def test_unknown_timm_model_is_a_one_line_error() -> None:
    enc = timm_encoder("no_such_model_xyz", pretrained=False)
    with pytest.raises(FidBenchError, match="not a timm model"):
        enc.load()


def test_loaded_encoder_pickles_without_its_network() -> None:
    import pickle

    enc = timm_encoder("test_resnet", pretrained=False, image_size=32)
    enc.load()
    clone = pickle.loads(pickle.dumps(enc))
    assert clone._model is None and clone.identity == enc.identity
    np.testing.assert_array_equal(clone.transform(rgb(0)).numpy(), enc.transform(rgb(0)).numpy())


# ----------------------------------------------------------------------------- open_clip
def test_open_clip_tiny_vit_image_tower(tiny_clip: list[str]) -> None:
    import torch

    enc = clip_encoder("TinyViT-test", pretrained=False)
    enc.load()
    assert not hasattr(enc._model, "token_embedding")  # the text tower is gone
    x = enc.transform(rgb(0, (60, 40)))
    assert tuple(x.shape) == (3, 32, 32)
    feats = enc.encode(torch.stack([x, enc.transform(rgb(1))]))
    assert feats.shape == (2, 24) and np.isfinite(feats).all()
    # a ViT tower adapts to another size on a multiple of its patch size
    bigger = clip_encoder("TinyViT-test", pretrained=False, image_size=48)
    bigger.load()
    assert tuple(bigger.transform(rgb(0)).shape) == (3, 48, 48)
    assert bigger.encode(bigger.transform(rgb(0))[None]).shape == (1, 24)


def test_open_clip_sizes_it_cannot_take_are_one_line_errors(tiny_clip: list[str]) -> None:
    with pytest.raises(FidBenchError, match="multiple of its patch size 8"):
        clip_encoder("TinyViT-test", pretrained=False, image_size=36).load()
    with pytest.raises(FidBenchError, match="only works at its native 64 px"):
        clip_encoder("TinyRN-test", pretrained=False, image_size=32).load()
    with pytest.raises(FidBenchError, match="not an open_clip architecture"):
        clip_encoder("No-Such-Arch", pretrained=False).load()


@pytest.mark.slow
def test_open_clip_vit_b32_random_init_features() -> None:
    import torch

    enc = clip_encoder("ViT-B-32", pretrained=False)
    enc.load()
    feats = enc.encode(torch.stack([enc.transform(rgb(i)) for i in range(2)]))
    assert feats.shape == (2, 512) and np.isfinite(feats).all()


def _simulate(
    seconds_per_image: dict[int, float], batches: list[int]
) -> tuple[list[tuple[int, int]], object]:
    from fid_bench.features.encoders import _MicroBatch

    micro, segments = _MicroBatch(), []
    for n in batches:
        start = 0
        while start < n:
            size, count = micro.segment(n - start, n)
            segments.append((size, count))
            warm_up_cost = 5.0 if len(segments) == 1 else 0.0  # lazy initialisation: ignored
            micro.record(size, count, seconds_per_image[size] * count + warm_up_cost)
            start += count
    return segments, micro


def test_cpu_micro_batch_is_chosen_by_measured_time_per_image() -> None:
    # a big CNN: small batches win, and the costly large trials are cut short
    segments, micro = _simulate({1: 0.17, 4: 0.16, 16: 0.25, 64: 0.31}, [64, 64])
    assert segments[:4] == [(1, 2), (1, 8), (4, 8), (16, 16)]
    assert micro.chosen == 4 and 64 not in micro.per_image
    assert segments[4:] == [(4, 30), (4, 64)] and sum(c for _, c in segments) == 128
    # a transformer: every candidate tried (each faster), the largest wins
    segments, micro = _simulate({1: 0.72, 4: 0.65, 16: 0.50, 64: 0.46}, [64, 64, 64])
    assert micro.chosen == 64 and segments[-1] == (64, 64)
    # a trial cut short by the end of a batch is run again on the next one
    segments, micro = _simulate({1: 0.2, 4: 0.1, 16: 0.1, 64: 0.1}, [64, 12, 64])
    assert segments[:5] == [(1, 2), (1, 8), (4, 8), (16, 16), (64, 30)]
    assert segments[5:7] == [(64, 12), (64, 64)] and micro.per_image[64] == pytest.approx(0.1)
    # small batches: only sizes that fit are tried
    segments, micro = _simulate({1: 0.2, 4: 0.1, 16: 0.1, 64: 0.1}, [6] * 6)
    assert micro.chosen == 4 and set(micro.per_image) == {1, 4}


def test_timm_features_do_not_depend_on_the_micro_batch() -> None:
    import torch

    enc = timm_encoder("test_resnet", pretrained=False, image_size=32)
    enc.load()
    x = torch.stack([enc.transform(rgb(i)) for i in range(8)])
    runs = [enc.encode(x) for _ in range(6)]  # trials on the first batches, then the chosen size
    assert enc._micro.chosen in (1, 4, 16, 64)
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], rtol=1e-5, atol=1e-6)
