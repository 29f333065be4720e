"""``model.resize=native``: windows of the input size cut from the original pixels (grid or seeded
random), small images resized up, features averaged, and the crop settings in the cache identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.errors import FidBenchError
from fid_bench.backbones.native_crops import crop_boxes
from fid_bench.features.onnx import OnnxEncoder, preprocess_config
from tests.test_onnx import PLAIN, SIZE, tiny_graph


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def native(path: Path, **kw) -> OnnxEncoder:
    enc = OnnxEncoder(path=str(path), **{**PLAIN, "resize": "native", **kw})
    enc.prepare("cpu")
    return enc


def test_grid_crops_are_original_pixels_and_their_features_are_averaged(tmp_path: Path) -> None:
    model = tiny_graph(tmp_path / "tiny.onnx", outputs=("image_embeds",))
    img = photo(40, 30)
    enc = native(model, crops=4)
    crops = enc.transform(img)
    arr = np.asarray(img)
    boxes = crop_boxes(40, 30, SIZE, enc.preprocess)
    assert crops.shape == (4, SIZE, SIZE, 3) and len(set(boxes)) == 4
    assert (0, 0) in boxes and (40 - SIZE, 30 - SIZE) in boxes  # the grid spans the whole image
    for crop, (x, y) in zip(crops, boxes, strict=True):
        np.testing.assert_array_equal(crop, arr[y : y + SIZE, x : x + SIZE])  # no resampling at all
    feats = enc.encode(np.stack([crops, enc.transform(photo(40, 30, seed=1))]))
    one_by_one = enc.encode(crops)  # each crop as an image of its own
    np.testing.assert_allclose(feats[0], one_by_one.mean(axis=0), rtol=1e-5)
    assert feats.shape == (2, one_by_one.shape[1])


def test_small_images_are_resized_up_and_random_crops_are_seeded(tmp_path: Path) -> None:
    model = tiny_graph(tmp_path / "tiny.onnx", outputs=("image_embeds",))
    small = native(model, crops=3).transform(photo(5, 6))
    assert small.shape == (3, SIZE, SIZE, 3)
    img = photo(50, 20)
    a, b = native(model, crops=5, crop_mode="random"), native(model, crops=5, crop_mode="random")
    np.testing.assert_array_equal(a.transform(img), b.transform(img))  # same image, same crops
    c = native(model, crops=5, crop_mode="random", crop_seed=1)
    assert not np.array_equal(a.transform(img), c.transform(img))


def test_crop_settings_are_part_of_the_identity_only_when_native(tmp_path: Path) -> None:
    model = tiny_graph(tmp_path / "tiny.onnx", outputs=("image_embeds",))
    plain = OnnxEncoder(path=str(model), **PLAIN)
    assert "crops" not in plain.identity  # features of the other modes keep their cache
    ids = {
        native(model, crops=1).identity,
        native(model, crops=4).identity,
        native(model, crops=4, crop_mode="random").identity,
        native(model, crops=4, crop_mode="random", crop_seed=3).identity,
    }
    assert len(ids) == 4 and plain.identity not in ids
    for bad in ({"crops": 0}, {"crops": True}, {"crop_mode": "corners"}):
        with pytest.raises(FidBenchError, match="model.crop"):
            preprocess_config(8, "native", 1.0, "nearest", [0.5] * 3, [0.5] * 3, **bad)


def test_the_config_reaches_the_encoder(compose_cfg, tmp_path: Path) -> None:
    from fid_bench.features.encoders import build_encoder

    model = tiny_graph(tmp_path / "tiny.onnx", outputs=("image_embeds",))
    cfg = compose_cfg(
        "model=onnx", f"model.path={model}", "model.resize=native", "model.crops=4", "model.crop_mode=random"
    )
    enc = build_encoder(cfg.model.backbone)
    assert enc.preprocess["crops"] == 4 and enc.preprocess["crop_mode"] == "random"
