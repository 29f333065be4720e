"""``model.resize=native``: windows of the input size cut from the original pixels (grid or seeded
random), small images resized up, features averaged, and the crop settings in the cache identity --
on the ONNX path and on the torch encoders (timm, open_clip), which agree on the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.backbones.native_crops import crop_boxes
from fid_bench.backbones.open_clip import OpenClipBackbone
from fid_bench.backbones.timm import TimmBackbone
from fid_bench.errors import FidBenchError
from fid_bench.features import onnx_export as export
from fid_bench.features.encoders import FrozenEncoder
from fid_bench.features.onnx import OnnxEncoder, preprocess_config
from tests.test_encoders import tiny_clip  # noqa: F401 - the fixture registers tiny open_clip configs
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


# ----------------------------------------------------------------------------- the torch encoders
# timm and open_clip backbones take the same keys; the windows come from the same code
# (fid_bench.backbones.native_crops), normalised and encoded by torch, features averaged.
TORCH_SIZE = 32  # the tiny ViTs' input side


def timm_vit(**kw) -> FrozenEncoder:
    return FrozenEncoder(TimmBackbone("test_vit", pretrained=False, image_size=TORCH_SIZE, **kw))


def clip_vit(**kw) -> FrozenEncoder:
    return FrozenEncoder(OpenClipBackbone("TinyViT-test", pretrained=False, **kw))


def loaded(enc: FrozenEncoder) -> FrozenEncoder:
    enc.prepare("cpu")
    enc.load()
    return enc


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_clip) -> dict[str, export.ExportReport]:  # noqa: F811
    """The tiny random timm and open_clip ViTs exported as ``fid-bench export-onnx`` writes them."""
    folder = tmp_path_factory.mktemp("exported")
    return {
        key: export.export_encoder(enc, folder / f"{key}.onnx", batch=2, exporter="torchscript")
        for key, enc in (("timm", timm_vit()), ("open_clip", clip_vit()))
    }


@pytest.mark.parametrize("key", ["timm", "open_clip"])
def test_torch_native_crops_agree_with_the_onnx_path_on_the_same_weights(exported, key: str) -> None:
    # larger than the 32 px input in both sides (one much wider), and one smaller (resized up first)
    imgs = [photo(40, 52, 1), photo(70, 50, 2), photo(33, 90, 3), photo(20, 28, 4)]
    native_kw = {"resize": "native", "crops": 2, "crop_mode": "grid"}
    enc = loaded((timm_vit if key == "timm" else clip_vit)(**native_kw))
    ref = enc.encode(np.stack([enc.transform(im) for im in imgs]))
    onnx_enc = OnnxEncoder(path=str(exported[key].path), **{**exported[key].preprocess, **native_kw})
    onnx_enc.prepare("cpu")
    got = onnx_enc.encode(np.stack([onnx_enc.transform(im) for im in imgs]))
    assert ref.shape == got.shape == (len(imgs), ref.shape[1])
    assert rel(ref, got) < export.FP32_TOLERANCE, key  # float32 torch and onnxruntime, same windows
    # and the windows matter: the model's own preprocessing (resize + crop) gives other features
    plain = loaded((timm_vit if key == "timm" else clip_vit)())
    import torch

    resized = plain.encode(torch.stack([plain.transform(im) for im in imgs]))
    assert rel(ref, resized) > 1e-2


def test_an_encoder_exported_with_native_crops_keeps_them(exported, tmp_path: Path) -> None:
    enc = timm_vit(resize="native", crops=3, crop_mode="random", crop_seed=5)
    report = export.export_encoder(enc, tmp_path / "native.onnx", batch=2, exporter="torchscript")
    assert {k: report.preprocess[k] for k in ("resize", "crops", "crop_mode", "crop_seed")} == {
        "resize": "native",
        "crops": 3,
        "crop_mode": "random",
        "crop_seed": 5,
    }
    assert "model.resize=native" in report.lines()[-1] and "model.crops=3" in report.lines()[-1]
    imgs = [photo(45, 61, 8), photo(64, 40, 9)]
    onnx_enc = OnnxEncoder(path=str(report.path), **report.preprocess)
    onnx_enc.prepare("cpu")
    got = onnx_enc.encode(np.stack([onnx_enc.transform(im) for im in imgs]))
    ref = loaded(enc).encode(np.stack([enc.transform(im) for im in imgs]))
    assert rel(ref, got) < export.FP32_TOLERANCE


def quadrants(side: int = 2 * TORCH_SIZE) -> tuple[Image.Image, list[tuple[int, int, int]]]:
    """An image whose four quadrants are four solid colours (top left, top right, bottom left, bottom right)."""
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (200, 200, 30)]
    arr = np.zeros((side, side, 3), dtype=np.uint8)
    half = side // 2
    for i, c in enumerate(colours):
        y, x = divmod(i, 2)
        arr[y * half : (y + 1) * half, x * half : (x + 1) * half] = c
    return Image.fromarray(arr), colours


def solid(colour: tuple[int, int, int], side: int = TORCH_SIZE) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, dtype=np.uint8), (side, side, 3))


def test_grid_crops_of_a_known_image_are_the_expected_windows() -> None:
    img, colours = quadrants()
    four = loaded(timm_vit(resize="native", crops=4))
    windows = four.transform(img)
    assert windows.shape == (4, TORCH_SIZE, TORCH_SIZE, 3) and windows.dtype == np.uint8
    for window, colour in zip(windows, colours, strict=True):  # row by row: the four quadrants
        np.testing.assert_array_equal(window, solid(colour))
    two = loaded(timm_vit(resize="native", crops=2)).transform(img)
    np.testing.assert_array_equal(two[0], solid(colours[0]))  # the grid's first and last points
    np.testing.assert_array_equal(two[1], solid(colours[3]))
    (centre,) = loaded(timm_vit(resize="native", crops=1)).transform(img)
    q = TORCH_SIZE // 2  # one window, centred: a quarter of each quadrant
    for i, colour in enumerate(colours):
        y, x = divmod(i, 2)
        np.testing.assert_array_equal(centre[y * q : (y + 1) * q, x * q : (x + 1) * q], solid(colour, q))
    # the image's row is the mean of its windows' features, each window encoded as an image of its own
    feats = four.encode(windows[None])
    alone = four.encode(np.stack([windows[i : i + 1] for i in range(4)]))
    assert feats.shape == (1, alone.shape[1])
    np.testing.assert_allclose(feats[0], alone.mean(axis=0), rtol=1e-4, atol=1e-6)
    assert np.abs(alone - alone[0]).max() > 1e-3  # the windows differ, so the mean is a real mean


#: the identities these encoders had before native scoring existed; library versions as installed
PINNED = {
    "resnet50": (
        "TimmEncoder:timm:resnet50",
        {
            "class": "fid_bench.features.encoders.TimmEncoder",
            "image_size": None,
            "libs": {"timm": "<timm>", "torchvision": "<torchvision>"},
            "model": "resnet50",
            "version": 1,
            "weights": {"hub": "timm-default-pretrained"},
        },
    ),
    "clip_vit_b32": (
        "OpenClipEncoder:open_clip:ViT-B-32/openai",
        {
            "arch": "ViT-B-32",
            "class": "fid_bench.features.encoders.OpenClipEncoder",
            "image_size": None,
            "libs": {"open_clip": "<open_clip_torch>", "torchvision": "<torchvision>"},
            "version": 1,
            "weights": {"tag": "openai"},
        },
    ),
    "efficientnet_lite0": (
        "PackagedTimmBackbone:timm:tf_efficientnet_lite0<-efficientnet_lite0",
        {
            "class": "fid_bench.backbones.packaged.PackagedTimmBackbone",
            "image_size": None,
            "libs": {"timm": "<timm>", "torchvision": "<torchvision>"},
            "model": "tf_efficientnet_lite0",
            "version": 1,
            "weights": {
                "conversion": 1,
                "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                "source": "efficientnet_lite0",
            },
        },
    ),
}


def pinned(model: str) -> str:
    import json

    from fid_bench.backbones.base import lib_version
    from fid_bench.data.decode import DECODER_VERSION

    head, fields = PINNED[model]
    libs = {k: lib_version(v.strip("<>")) for k, v in fields["libs"].items()}
    full = {**fields, "libs": libs, "decoder": [DECODER_VERSION, lib_version("pillow")], "dtype": "float32"}
    return f"{head} " + json.dumps(full, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("model", sorted(PINNED))
def test_torch_identities_are_unchanged_unless_native_and_follow_the_crops(compose_cfg, model: str) -> None:
    from fid_bench.features.encoders import build_encoder

    def identity(*overrides: str) -> str:
        cfg = compose_cfg(f"model={model}", "classifier=logreg", *overrides)
        return build_encoder(cfg.model.backbone).identity

    before = pinned(model)
    assert identity() == before
    # crop settings without resize=native are not read, so they key nothing
    assert identity("model.crops=4", "model.crop_mode=random", "model.crop_seed=3") == before
    ids = [
        identity("model.resize=native"),
        identity("model.resize=native", "model.crops=2"),
        identity("model.resize=native", "model.crops=4"),
        identity("model.resize=native", "model.crops=4", "model.crop_mode=random"),
        identity("model.resize=native", "model.crops=4", "model.crop_mode=random", "model.crop_seed=3"),
    ]
    assert len(set(ids)) == len(ids) and before not in ids


def test_torch_native_options_reach_the_backbone_and_bad_values_are_one_line_errors(compose_cfg) -> None:
    from fid_bench.features.encoders import build_encoder

    for model in ("vit_b16", "clip_vit_l14", "dinov2_vits14", "efficientnet_lite1"):
        cfg = compose_cfg(f"model={model}", "classifier=logreg", "model.resize=native", "model.crops=3",
                          "model.crop_mode=random", "model.crop_seed=2")  # fmt: skip
        enc = build_encoder(cfg.model.backbone)
        assert enc.backbone.native == {"crops": 3, "crop_mode": "random", "crop_seed": 2}, model
    bad = (
        ({"crops": 0}, "model.crops must be a positive integer"),
        ({"crops": True}, "model.crops must be a positive integer"),
        ({"crop_mode": "corners"}, "model.crop_mode must be grid or random"),
        ({"crop_seed": "x"}, "model.crop_seed must be an integer"),
    )
    for kw, message in bad:
        for build in (timm_vit, clip_vit):
            with pytest.raises(FidBenchError, match=message) as err:
                build(resize="native", **kw)
            assert "\n" not in str(err.value)
        with pytest.raises(FidBenchError, match=message):  # the same words on the ONNX path
            preprocess_config(8, "native", 1.0, "nearest", [0.5] * 3, [0.5] * 3, **kw)
    with pytest.raises(FidBenchError, match="model.resize must be null .* or native"):
        timm_vit(resize="shortest")
    # crop settings are only read with resize=native, as on the ONNX path
    assert timm_vit(crops=0).backbone.native is None


def test_finetuning_refuses_native_resolution_in_one_line(compose_cfg, tmp_path: Path) -> None:
    import pandas as pd
    from hydra.utils import instantiate

    from tests.test_finetune import make_job

    job = make_job(pd.DataFrame(), tmp_path)
    base = ("model=resnet50", "model.pretrained=false", "data.image_size=32")
    cfg = compose_cfg(*base, "model.resize=native", "model.crops=2")
    assert cfg.classifier._target_.endswith("FinetuneDetector")
    with pytest.raises(FidBenchError, match="model.resize=native is a frozen-features option") as err:
        instantiate(cfg.classifier).setup(job)
    assert "\n" not in str(err.value)
    instantiate(compose_cfg(*base).classifier).setup(job)  # without it, fine-tuning sets up as before
