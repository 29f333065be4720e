"""Streaming extraction: aligned outputs, cache reuse, the torch-free fast path, failures, kills."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.data.decode import load_rgb
from fid_bench.errors import FidBenchError
from fid_bench.features.encoders import as_encoder
from fid_bench.features.extract import extract_features, feature_cache
from fid_bench.features.spectrum import SpectrumEncoder
from tests.conftest import REPO
from tests.test_encoders import timm_encoder


def make_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> tuple[list[str], list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, sha1s = [], []
    for i in range(n):
        p = folder / f"img_{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
        sha1s.append(hashlib.sha1(p.read_bytes()).hexdigest())
    return paths, sha1s


def expected(enc: SpectrumEncoder, paths: list[str]) -> np.ndarray:
    return np.stack([enc.features(load_rgb(p)) for p in paths])


def test_features_are_aligned_with_the_input_and_cached(tmp_path: Path, caplog) -> None:
    paths, sha1s = make_images(tmp_path / "img", 12)
    enc = SpectrumEncoder()
    # shuffled, with duplicates (the same file twice, and a copy under another name)
    copy = tmp_path / "img" / "copy.png"
    copy.write_bytes(Path(paths[3]).read_bytes())
    order = [5, 3, 0, 11, 3, 7, 1, 2, 4, 6, 8, 9, 10]
    p_in = [paths[i] for i in order] + [str(copy)]
    s_in = [sha1s[i] for i in order] + [sha1s[3]]
    with caplog.at_level(logging.INFO, logger="fid_bench.features.extract"):
        feats, stats = extract_features(enc, p_in, s_in, tmp_path / "cache", batch_size=4, num_workers=0)
    np.testing.assert_allclose(feats, expected(enc, p_in), rtol=1e-5, atol=1e-6)
    assert stats["n_images"] == 14 and stats["n_unique"] == 12 and stats["n_extracted"] == 12
    assert stats["n_cached"] == 0 and stats["cache_hit_ratio"] == 0.0 and stats["images_per_s"] > 0
    assert stats["extract_images_per_s"] > 0 and stats["seconds"] > 0
    assert f"features: 0 of 14 images cached, extracting 12 with {enc.short} (2 duplicate rows" in caplog.text

    # second call: everything cached, nothing extracted, same values
    again, stats2 = extract_features(SpectrumEncoder(), p_in, s_in, tmp_path / "cache", num_workers=0)
    np.testing.assert_array_equal(again, feats)
    assert stats2["n_extracted"] == 0 and stats2["cache_hit_ratio"] == 1.0 and stats2["n_cached"] == 14


def test_only_missing_images_are_extracted(tmp_path: Path, monkeypatch) -> None:
    paths, sha1s = make_images(tmp_path / "img", 10)
    enc = SpectrumEncoder()
    extract_features(enc, paths[:4], sha1s[:4], tmp_path / "cache", num_workers=0)
    seen: list[str] = []
    real = SpectrumEncoder.transform

    def spy(self, img):
        seen.append(img.tobytes()[:16])
        return real(self, img)

    monkeypatch.setattr(SpectrumEncoder, "transform", spy)
    feats, stats = extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "cache", num_workers=0)
    assert stats["n_cached"] == 4 and stats["n_extracted"] == 6 and stats["cache_hit_ratio"] == 0.4
    assert len(seen) == 6
    monkeypatch.setattr(SpectrumEncoder, "transform", real)
    np.testing.assert_allclose(feats, expected(enc, paths), rtol=1e-5, atol=1e-6)


def test_renamed_file_keeps_its_entry_and_edited_file_misses(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 5)
    cache = tmp_path / "cache"
    before, _ = extract_features(SpectrumEncoder(), paths, sha1s, cache, num_workers=0)
    renamed = tmp_path / "img" / "renamed.png"
    os.replace(paths[0], renamed)
    _, stats = extract_features(SpectrumEncoder(), [str(renamed)], [sha1s[0]], cache, num_workers=0)
    assert stats["n_extracted"] == 0 and stats["cache_hit_ratio"] == 1.0
    # edit a file: new content, new sha1, extracted again with new values
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(paths[1])
    new_sha = hashlib.sha1(Path(paths[1]).read_bytes()).hexdigest()
    after, stats = extract_features(SpectrumEncoder(), [paths[1]], [new_sha], cache, num_workers=0)
    assert stats["n_extracted"] == 1 and not np.allclose(after[0], before[1])


def test_worker_processes_give_the_same_features(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 20, size=48)
    a, _ = extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "c0", batch_size=8, num_workers=0)
    b, stats = extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "c2", batch_size=8, num_workers=2)
    np.testing.assert_array_equal(a, b)
    assert stats["n_extracted"] == 20


def test_timm_model_features_through_the_loader(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 6)
    enc = timm_encoder("test_resnet", pretrained=False, image_size=32)
    feats, stats = extract_features(enc, paths, sha1s, tmp_path / "cache", batch_size=4, num_workers=0)
    assert feats.shape == (6, enc._loaded_info["num_features"]) and stats["n_extracted"] == 6
    # the same as running the encoder by hand, one image at a time
    import torch

    one = np.concatenate([enc.encode(torch.stack([enc.transform(load_rgb(p))])) for p in paths])
    np.testing.assert_allclose(feats, one, rtol=1e-5, atol=1e-6)
    meta = feature_cache(enc, tmp_path / "cache").read_meta()
    assert meta["dim"] == feats.shape[1] and "Resize" in meta["encoder"]["preprocess"]


FAST_PATH = """
import sys, json
sys.path.insert(0, {repo!r})
from pathlib import Path
from fid_bench.features.encoders import build_encoder
from fid_bench.features.extract import extract_features
paths, sha1s, cfg = json.loads(Path({args!r}).read_text())
enc = build_encoder(cfg)
feats, stats = extract_features(enc, paths, sha1s, Path({cache!r}), num_workers=0, device="auto")
print(json.dumps({{"stats": stats, "shape": list(feats.shape),
                  "heavy": sorted(m for m in ("torch", "timm", "open_clip", "torchvision") if m in sys.modules)}}))
"""


@pytest.mark.parametrize(
    "cfg",
    [
        {"_target_": "fid_bench.features.spectrum.SpectrumEncoder"},
        {
            "_target_": "fid_bench.backbones.timm.TimmBackbone",
            "model_name": "test_resnet",
            "pretrained": False,
        },
    ],
    ids=["spectrum", "timm"],
)
def test_fully_cached_call_never_imports_torch(tmp_path: Path, cfg: dict) -> None:
    import json

    paths, sha1s = make_images(tmp_path / "img", 5)
    args = tmp_path / "args.json"
    args.write_text(json.dumps([paths, sha1s, cfg]))
    script = FAST_PATH.format(repo=str(REPO), args=str(args), cache=str(tmp_path / "cache"))

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    assert cold["stats"]["n_extracted"] == 5 and "torch" in cold["heavy"]
    assert warm["stats"]["n_extracted"] == 0 and warm["stats"]["cache_hit_ratio"] == 1.0
    assert warm["heavy"] == [] and warm["shape"] == cold["shape"]


def test_image_changed_since_hashing_is_a_one_line_error_and_keeps_earlier_rows(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 9)
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(paths[6])  # edited after the table was built
    with pytest.raises(FidBenchError) as info:
        extract_features(
            SpectrumEncoder(), paths, sha1s, tmp_path / "cache", batch_size=2, num_workers=0, chunk_rows=2
        )
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(paths[6]) and "changed since the data was read" in msg
    # the batches before it were flushed to the cache: a re-run does not redo them
    cache = feature_cache(SpectrumEncoder(), tmp_path / "cache")
    assert cache.contains(sha1s[:6]).all() and not cache.contains(sha1s[6:]).any()


def test_unreadable_image_during_extraction_names_the_file(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 4)
    broken = tmp_path / "img" / "broken.png"
    data = Path(paths[0]).read_bytes()[:60]  # a truncated PNG whose hash the table recorded
    broken.write_bytes(data)
    paths.append(str(broken))
    sha1s.append(hashlib.sha1(data).hexdigest())
    for workers in (0, 2):
        with pytest.raises(FidBenchError) as info:
            extract_features(
                SpectrumEncoder(), paths, sha1s, tmp_path / f"cache{workers}", num_workers=workers
            )
        assert str(broken) in str(info.value) and "\n" not in str(info.value)
    os.remove(paths[1])
    with pytest.raises(FidBenchError, match="cannot read"):
        extract_features(SpectrumEncoder(), paths[1:2], sha1s[1:2], tmp_path / "cache9", num_workers=0)


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 2)
    with pytest.raises(FidBenchError, match="no content hash"):
        extract_features(SpectrumEncoder(), paths, [sha1s[0], ""], tmp_path / "c")
    with pytest.raises(FidBenchError, match="2 paths but 1 sha1s"):
        extract_features(SpectrumEncoder(), paths, sha1s[:1], tmp_path / "c")
    with pytest.raises(FidBenchError, match="features.device must be"):
        extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "c", device="tpu")
    with pytest.raises(FidBenchError, match="batch_size"):
        extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "c", batch_size=0)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(FidBenchError, match="CUDA is not available"):
            extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "c", device="cuda", num_workers=0)


def test_extraction_streams_in_chunks(tmp_path: Path, monkeypatch) -> None:
    """Rows go to the cache as they come: no buffer larger than a chunk, whatever the input size."""
    from fid_bench.features.cache import FeatureCache

    paths, sha1s = make_images(tmp_path / "img", 23)
    sizes: list[int] = []
    real_put = FeatureCache.put

    def put(self, keys, feats):
        sizes.append(len(keys))
        return real_put(self, keys, feats)

    monkeypatch.setattr(FeatureCache, "put", put)
    feats, _ = extract_features(
        SpectrumEncoder(), paths, sha1s, tmp_path / "cache", batch_size=3, num_workers=0, chunk_rows=5
    )
    assert sum(sizes) == 23 and max(sizes) <= 6 and len(sizes) >= 4  # 5 rows, rounded up to whole batches
    np.testing.assert_allclose(feats, expected(SpectrumEncoder(), paths), rtol=1e-5, atol=1e-6)


KILLED_RUN = """
import sys, json, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from fid_bench.features.spectrum import SpectrumEncoder
from fid_bench.features.extract import extract_features

real = SpectrumEncoder.transform
def slow(self, img):  # slowed down so the test can kill it half-way; the identity is unchanged
    time.sleep(0.05)
    return real(self, img)
SpectrumEncoder.transform = slow
paths, sha1s = json.loads(Path({args!r}).read_text())
extract_features(SpectrumEncoder(), paths, sha1s, Path({cache!r}), batch_size=4, num_workers=0, chunk_rows=4)
"""


def test_run_killed_mid_extraction_resumes_with_only_the_rest(tmp_path: Path) -> None:
    import json

    paths, sha1s = make_images(tmp_path / "img", 60)
    (tmp_path / "args.json").write_text(json.dumps([paths, sha1s]))
    folder = feature_cache(SpectrumEncoder(), tmp_path / "cache").dir
    script = KILLED_RUN.format(
        repo=str(REPO), args=str(tmp_path / "args.json"), cache=str(tmp_path / "cache")
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("chunk-*.feats"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait(30)
    done = int(feature_cache(SpectrumEncoder(), tmp_path / "cache").contains(sha1s).sum())
    assert 8 <= done < 60

    feats, stats = extract_features(SpectrumEncoder(), paths, sha1s, tmp_path / "cache", num_workers=0)
    assert stats["n_cached"] == done and stats["n_extracted"] == 60 - done
    np.testing.assert_allclose(feats, expected(SpectrumEncoder(), paths), rtol=1e-5, atol=1e-6)


def _extract_in_job(folder: str, cache: str) -> tuple[int, float]:
    paths, sha1s = make_images(Path(folder), 6)
    feats, stats = extract_features(SpectrumEncoder(), paths, sha1s, Path(cache), batch_size=2, num_workers=2)
    return feats.shape[0], stats["n_extracted"]


def test_worker_processes_start_inside_a_joblib_job(tmp_path: Path) -> None:
    """Hydra's joblib launcher runs each job in a loky process, whose default context cannot start workers."""
    from joblib import Parallel, delayed

    out = Parallel(n_jobs=2, backend="loky")(
        delayed(_extract_in_job)(str(tmp_path / f"img{i}"), str(tmp_path / "cache")) for i in range(2)
    )
    assert out == [(6, 6.0), (6, 6.0)]


class MinimalEncoder:
    """Only what the interface promises: identity, transform, encode."""

    identity = "MinimalEncoder:mean-colour v1"

    def transform(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img, dtype=np.float32).mean(axis=(0, 1))

    def encode(self, batch) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)


def test_any_object_with_identity_transform_and_encode_is_accepted(tmp_path: Path) -> None:
    paths, sha1s = make_images(tmp_path / "img", 5)
    feats, stats = extract_features(
        as_encoder(MinimalEncoder()), paths, sha1s, tmp_path / "cache", num_workers=2
    )
    want = np.stack([np.asarray(load_rgb(p), dtype=np.float32).mean(axis=(0, 1)) for p in paths])
    np.testing.assert_allclose(feats, want, rtol=1e-6)
    _, stats = extract_features(as_encoder(MinimalEncoder()), paths, sha1s, tmp_path / "cache", num_workers=0)
    assert stats["n_extracted"] == 0 and stats["cache_hit_ratio"] == 1.0


def test_minimal_encoder_in_this_process(tmp_path: Path) -> None:
    """The same promise without worker processes, so the mutation run (which cannot use them) checks it."""
    paths, sha1s = make_images(tmp_path / "img", 3)
    feats, stats = extract_features(
        as_encoder(MinimalEncoder()), paths, sha1s, tmp_path / "cache", num_workers=0
    )
    want = np.stack([np.asarray(load_rgb(p), dtype=np.float32).mean(axis=(0, 1)) for p in paths])
    np.testing.assert_allclose(feats, want, rtol=1e-6)
    assert stats["n_extracted"] == 3


def test_encoders_sharing_a_name_never_share_cached_features(tmp_path: Path) -> None:
    """The cache is keyed by identity, not name: other weights or another image size mean other features."""
    import torch

    paths, sha1s = make_images(tmp_path / "img", 3)
    variants = [
        timm_encoder("test_resnet", pretrained=False, init_seed=0, image_size=32),
        timm_encoder("test_resnet", pretrained=False, init_seed=1, image_size=32),  # other weights
        timm_encoder("test_resnet", pretrained=False, init_seed=0, image_size=48),  # other preprocessing
    ]
    assert len({v.name for v in variants}) == 1 and len({v.identity for v in variants}) == 3
    got = []
    for enc in variants:
        feats, stats = extract_features(enc, paths, sha1s, tmp_path / "cache", num_workers=0)
        assert stats["n_extracted"] == 3  # nothing served from another variant's features
        enc.load()
        with torch.inference_mode():
            own = enc.encode(torch.stack([enc.transform(load_rgb(p)) for p in paths]))
        np.testing.assert_allclose(feats, own, rtol=1e-5, atol=1e-6)
        got.append(feats)
    assert not np.allclose(got[0], got[1]) and not np.allclose(got[0], got[2])
