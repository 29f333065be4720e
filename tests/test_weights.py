"""Pretrained weights: the one offline error, the hub cache, local checkpoints in every usual shape."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones import weights as W
from fid_bench.errors import FidBenchError
from tests.conftest import REPO, TINY
from tests.test_encoders import (
    clip_encoder,
    timm_encoder,
    tiny_clip,  # noqa: F401 - the fixture registers tiny open_clip configs
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(n)]


def features(enc) -> np.ndarray:
    import torch

    enc.load()
    return enc.encode(torch.stack([enc.transform(im) for im in images()]))


def fake_hub_file(repo_id: str, filename: str, state_dict: dict) -> Path:
    """Put ``state_dict`` into the (test-private) Hugging Face cache as the hub would lay it out."""
    from safetensors.torch import save_file

    repo = W.hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(snap / filename))
    return snap / filename


# ----------------------------------------------------------------------------- offline
# A hang guard, not a speed check: waiting on a network that is not there would block for minutes.
@pytest.mark.timeout(120)
def test_offline_without_cached_weights_is_one_clear_error() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1" and not W.hub_cache_dir().exists()
    with pytest.raises(FidBenchError) as info:
        timm_encoder("resnet50", pretrained=True).load()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(
        "pretrained weights for resnet50 (hf-hub:timm/resnet50.a1_in1k) are not in the local Hugging Face cache"
    )
    assert "the hub cannot be reached (HF_HUB_OFFLINE is set)" in msg
    assert "hf download timm/resnet50.a1_in1k" in msg
    assert "model.weights=/path/to/checkpoint" in msg and "model.pretrained=false" in msg
    assert str(W.hub_cache_dir()) in msg


def test_offline_open_clip_names_its_tag_repo() -> None:
    with pytest.raises(
        FidBenchError, match=r"ViT-B-32/openai \(hf-hub:timm/vit_base_patch32_clip_224\.openai\)"
    ):
        clip_encoder("ViT-B-32", "openai").load()
    with pytest.raises(FidBenchError, match="not an open_clip tag of ViT-B-32"):
        clip_encoder("ViT-B-32", "no-such-tag").load()


@pytest.mark.slow
def test_offline_job_ends_in_one_error_line(isolated: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "fid_bench", *TINY, "model=resnet50", "classifier=logreg"],
        cwd=isolated,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    # stopped before the job by the offline check, which names the fetch and the offline-ready models
    assert "model=resnet50: its pretrained weights (hf-hub:timm/resnet50.a1_in1k)" in errors[0]
    assert "fid-bench weights get resnet50" in errors[0]


# ----------------------------------------------------------------------------- hub cache
def test_cached_hub_weights_load_offline_and_match() -> None:
    import timm
    import torch

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet", pretrained=False)  # with its classifier, as on the hub
    path = fake_hub_file("timm/test_resnet.r160_in1k", "model.safetensors", reference.state_dict())
    enc = timm_encoder("test_resnet", pretrained=True, image_size=32)
    got = features(enc)
    reference.reset_classifier(0)
    reference.eval()
    with torch.inference_mode():
        want = reference(torch.stack([enc.transform(im) for im in images()])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    info = enc.describe()["weights"]
    assert info["hf_hub_revision"] == COMMIT and info["file"] == str(path)


def test_cached_open_clip_tag_loads_with_its_preprocessing(tiny_clip, monkeypatch) -> None:  # noqa: F811
    import open_clip
    import torch
    from open_clip import pretrained as registry

    monkeypatch.setitem(
        registry._PRETRAINED,
        "TinyViT-test",
        {"tiny": {"hf_hub": "test-org/tiny-clip/", "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2)}},
    )
    torch.manual_seed(4)
    reference = open_clip.create_model("TinyViT-test", pretrained=None)
    fake_hub_file("test-org/tiny-clip", "open_clip_model.safetensors", reference.state_dict())
    enc = clip_encoder("TinyViT-test", "tiny", pretrained=True)
    got = features(enc)
    assert "mean=[0.5, 0.4, 0.3]" in enc.describe()["preprocess"].replace("(", "[").replace(")", "]")
    reference.eval()
    with torch.inference_mode():
        want = reference.encode_image(torch.stack([enc.transform(im) for im in images()])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert enc.describe()["weights"]["hf_hub_revision"] == COMMIT


def test_features_of_a_new_hub_commit_never_join_the_old_commits_features(tmp_path: Path) -> None:
    """docs/MODELS.md: features of different weights never mix; a moved hub commit stops extraction instead."""
    import timm
    import torch
    from safetensors.torch import save_file

    from fid_bench.features.extract import extract_features, feature_cache
    from tests.test_extract import make_images

    torch.manual_seed(3)
    sd = timm.create_model("test_resnet", pretrained=False).state_dict()
    fake_hub_file("timm/test_resnet.r160_in1k", "model.safetensors", sd)
    paths, sha1s = make_images(tmp_path / "img", 4)
    enc = timm_encoder("test_resnet", pretrained=True, image_size=32)
    old_feats, _ = extract_features(enc, paths[:2], sha1s[:2], tmp_path / "cache", num_workers=0)
    # the hub repo moved on and the local cache now has a newer commit, with other weights
    repo = W.hub_cache_dir() / "models--timm--test_resnet.r160_in1k"
    newer = "f" * 40
    (repo / "snapshots" / newer).mkdir()
    torch.manual_seed(4)
    save_file(
        {
            k: v.contiguous()
            for k, v in timm.create_model("test_resnet", pretrained=False).state_dict().items()
        },
        str(repo / "snapshots" / newer / "model.safetensors"),
    )
    (repo / "refs" / "main").write_text(newer)
    moved = timm_encoder("test_resnet", pretrained=True, image_size=32)
    with pytest.raises(FidBenchError) as info:
        extract_features(moved, paths, sha1s, tmp_path / "cache", num_workers=0)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"now loads hub commit {newer[:12]}" in msg and f"of commit {COMMIT[:12]}" in msg
    cache = feature_cache(timm_encoder("test_resnet", pretrained=True, image_size=32), tmp_path / "cache")
    assert str(cache.dir) in msg
    # nothing of the new commit was written next to the old features
    assert cache.missing(sha1s) == sha1s[2:]
    np.testing.assert_array_equal(cache.get(sha1s[:2]), old_feats)
    assert cache.read_meta()["encoder"]["weights"]["hf_hub_revision"] == COMMIT
    # deleting the folder, as the message says, re-extracts everything with the new weights
    shutil.rmtree(cache.dir)
    new_feats, stats = extract_features(
        timm_encoder("test_resnet", pretrained=True, image_size=32),
        paths,
        sha1s,
        tmp_path / "cache",
        num_workers=0,
    )
    assert stats["n_extracted"] == 4
    assert not np.allclose(new_feats[:2], old_feats)
    assert (
        feature_cache(moved, tmp_path / "cache").read_meta()["encoder"]["weights"]["hf_hub_revision"] == newer
    )


# ----------------------------------------------------------------------------- local checkpoints
@pytest.fixture(scope="module")
def resnet_source():
    """A randomly initialised test_resnet (without head) and its features: what checkpoints must reproduce."""
    enc = timm_encoder("test_resnet", pretrained=False, init_seed=5, image_size=32)
    return enc, features(enc)


@pytest.mark.parametrize("shape", ["safetensors", "pth-nested-module", "bin-plain", "lightning", "with-head"])
def test_local_checkpoint_round_trips_to_identical_features(
    tmp_path: Path, resnet_source, shape: str
) -> None:
    import torch

    enc, want = resnet_source
    sd = {k: v.clone() for k, v in enc._model.state_dict().items()}
    if shape == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    elif shape == "pth-nested-module":
        path = tmp_path / "w.pth"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif shape == "bin-plain":
        path = tmp_path / "w.bin"
        torch.save(sd, path)
    elif shape == "lightning":
        path = tmp_path / "w.pt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "optimizer_states": []}, path)
    else:  # a checkpoint of the full classifier: the head is dropped without complaint
        path = tmp_path / "w.pt"
        torch.save({**sd, "fc.weight": torch.zeros(10, 32), "fc.bias": torch.zeros(10)}, path)
    loaded = timm_encoder("test_resnet", weights=str(path), image_size=32)
    np.testing.assert_array_equal(features(loaded), want)
    assert loaded.describe()["weights"]["file"] == str(path.resolve())


def test_checkpoint_problems_are_reported_clearly(tmp_path: Path, resnet_source, caplog) -> None:
    import torch

    enc, want = resnet_source
    sd = enc._model.state_dict()
    with pytest.raises(FidBenchError, match="no such checkpoint file"):
        timm_encoder("test_resnet", weights=str(tmp_path / "nope.pt")).identity  # noqa: B018
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FidBenchError, match="cannot read checkpoint"):
        timm_encoder("test_resnet", weights=str(tmp_path / "junk.pt")).load()
    torch.save({k: v for i, (k, v) in enumerate(sd.items()) if i % 2}, tmp_path / "half.pt")
    with pytest.raises(FidBenchError, match=r"weights are missing from the checkpoint, e\.g\. "):
        timm_encoder("test_resnet", weights=str(tmp_path / "half.pt")).load()
    bad = dict(sd)
    key = next(k for k, v in sd.items() if v.ndim == 4)
    bad[key] = torch.zeros(1, 1, 1, 1)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(FidBenchError, match=f"wrong shape.*{key}"):
        timm_encoder("test_resnet", weights=str(tmp_path / "shape.pt")).load()
    torch.save({**sd, "extra.thing": torch.zeros(2)}, tmp_path / "extra.pt")
    with caplog.at_level(logging.WARNING, logger="fid_bench.backbones.weights"):
        extra = timm_encoder("test_resnet", weights=str(tmp_path / "extra.pt"), image_size=32)
        np.testing.assert_array_equal(features(extra), want)
    assert "unexpected checkpoint key(s), e.g. extra.thing" in caplog.text


def test_vit_checkpoint_loads_at_another_image_size(tmp_path: Path) -> None:
    import torch

    source = timm_encoder("test_vit", pretrained=False, init_seed=2)
    source.load()
    torch.save(source._model.state_dict(), tmp_path / "vit.pt")
    small = timm_encoder("test_vit", weights=str(tmp_path / "vit.pt"), image_size=32)
    feats = features(small)
    assert feats.shape == (3, source._loaded_info["num_features"]) and np.isfinite(feats).all()
    # the position embedding was resampled from the checkpoint, not left random
    assert small._model.pos_embed.shape[1] == 1 + 4
    assert not np.allclose(
        feats, features(timm_encoder("test_vit", pretrained=False, init_seed=9, image_size=32))
    )


def test_open_clip_local_checkpoint_full_or_image_tower(tmp_path: Path, tiny_clip) -> None:  # noqa: F811
    import torch

    source = clip_encoder("TinyViT-test", pretrained=False, init_seed=8)
    want = features(source)
    torch.save({f"visual.{k}": v for k, v in source._model.state_dict().items()}, tmp_path / "tower.pt")
    torch.save(source._model.state_dict(), tmp_path / "bare.pt")
    for name in ("tower.pt", "bare.pt"):
        np.testing.assert_array_equal(
            features(clip_encoder("TinyViT-test", weights=str(tmp_path / name))), want
        )
    np.testing.assert_array_equal(
        features(clip_encoder("TinyViT-test", pretrained_tag="ignored", weights=str(tmp_path / "bare.pt"))),
        want,
    )


def test_shared_builders_for_the_finetune_track(tmp_path: Path, resnet_source) -> None:
    import torch

    enc, _ = resnet_source
    torch.save(enc._model.state_dict(), tmp_path / "r.pt")
    from fid_bench.backbones.open_clip import create_open_clip_model
    from fid_bench.backbones.timm import create_timm_model

    model = create_timm_model("test_resnet", weights=str(tmp_path / "r.pt"), num_classes=0)
    for a, b in zip(model.state_dict().values(), enc._model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # CNNs refuse img_size with timm's own TypeError, which callers use to retry without it
    with pytest.raises(TypeError, match="img_size"):
        create_timm_model("test_resnet", weights=str(tmp_path / "r.pt"), num_classes=0, img_size=32)
    with pytest.raises(FidBenchError, match="not in the local Hugging Face cache"):
        create_open_clip_model("ViT-B-32", "openai")
