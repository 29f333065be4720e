"""Backbones: one recipe per family, built the same way for the frozen and the fine-tuning track."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fid_bench.backbones.base import Preprocessing
from fid_bench.backbones.open_clip import OpenClipBackbone
from fid_bench.backbones.small_cnn import SmallCNN
from fid_bench.backbones.timm import TimmBackbone
from fid_bench.errors import FidBenchError
from tests.conftest import REPO
from tests.test_encoders import tiny_clip  # noqa: F401 - the fixture registers tiny open_clip configs


def rgb(seed: int, size: tuple[int, int] = (50, 40)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


# -- small_cnn ------------------------------------------------------------------------------------------
def test_small_cnn_shapes_and_preprocessing():
    built = SmallCNN(widths=[4, 8, 16], blocks=1).build()
    assert built.preprocessing.side == 32  # CIFAKE's size when data.image_size is not set
    out = built.network(torch.zeros(3, 3, 32, 32))
    assert out.shape == (3, built.num_features) and built.num_features == 32  # avg + max pooling of 16
    assert built.preprocessing.finetune_dict() == {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert SmallCNN(image_size=48).build().preprocessing.side == 48
    with pytest.raises(FidBenchError, match="too small"):
        SmallCNN(image_size=2, widths=[4, 8, 16])
    with pytest.raises(FidBenchError, match="widths"):
        SmallCNN(widths=[])
    assert not SmallCNN.frozen_features  # trained from scratch: frozen features would be random


# -- timm -----------------------------------------------------------------------------------------------
def test_timm_backbone_any_model_and_input_size():
    cnn = TimmBackbone("test_resnet", pretrained=False, image_size=40).build()
    assert cnn.preprocessing.side == 40
    assert cnn.network(torch.zeros(2, 3, 40, 40)).shape == (2, cnn.num_features)
    # a token-grid model is built for the requested size (the position embedding follows it)
    vit = TimmBackbone("test_vit", pretrained=False, image_size=32).build()
    assert vit.preprocessing.side == 32 and vit.network(torch.zeros(2, 3, 32, 32)).shape == (
        2,
        vit.num_features,
    )
    native = TimmBackbone("test_vit", pretrained=False).build()
    cfg = native.network.pretrained_cfg
    assert native.preprocessing.side == cfg["input_size"][-1]
    assert native.preprocessing.mean == tuple(cfg["mean"]) and native.preprocessing.std == tuple(cfg["std"])
    with pytest.raises(FidBenchError, match="not a timm model"):
        TimmBackbone("no_such_model_xyz", pretrained=False).build()


def test_timm_backbone_weights_follow_the_shared_policy(tmp_path):
    source = TimmBackbone("test_resnet", pretrained=False).build().network
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = TimmBackbone("test_resnet", weights=str(path)).build().network
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # pretrained=true with nothing cached and the hub offline: one clear error, no download attempt
    with pytest.raises(FidBenchError, match="test_resnet"):
        TimmBackbone("test_resnet", pretrained=True).build()
    with pytest.raises(FidBenchError):
        TimmBackbone("test_resnet", weights=str(tmp_path / "missing.pth")).build()


def test_timm_eval_transform_is_timms_own_for_the_declared_preprocessing():
    """The transform made from the declaration equals timm's transform of the model's data config."""
    from timm.data import create_transform, resolve_data_config

    for image_size in (None, 48):
        backbone = TimmBackbone("test_resnet", pretrained=False, image_size=image_size)
        built = backbone.build()
        args = {"input_size": (3, image_size, image_size)} if image_size else {}
        reference = create_transform(**resolve_data_config(args, model=built.network), is_training=False)
        ours = backbone.eval_transform(built.preprocessing)
        assert str(ours) == str(reference)
        assert torch.equal(ours(rgb(0)), reference(rgb(0)))


# -- open_clip ------------------------------------------------------------------------------------------
def test_open_clip_backbone_tower_preprocessing_and_transform(tiny_clip):  # noqa: F811
    import open_clip

    for image_size in (None, 48):
        backbone = OpenClipBackbone("TinyViT-test", pretrained=False, image_size=image_size)
        built = backbone.build()
        assert not hasattr(built.network, "token_embedding")  # the image tower only
        side = image_size or 32
        assert built.preprocessing.size == (side, side) and built.num_features == 24
        assert built.network(torch.zeros(1, 3, side, side)).shape == (1, 24)
        # the eval transform open_clip.create_model_and_transforms would return for the same model
        _, _, reference = open_clip.create_model_and_transforms(
            "TinyViT-test", pretrained=None, force_image_size=image_size
        )
        ours = backbone.eval_transform(built.preprocessing)
        assert str(ours) == str(reference) and torch.equal(ours(rgb(1)), reference(rgb(1)))
    with pytest.raises(FidBenchError, match="open_clip"):
        OpenClipBackbone("NoSuchArch", pretrained=False).build()


# -- the contract ---------------------------------------------------------------------------------------
def test_preprocessing_rejects_an_unknown_resize_mode():
    with pytest.raises(FidBenchError, match="resize_mode"):
        Preprocessing(size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="stretch")


def test_backbones_import_nothing_above_them_and_nothing_heavy():
    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
import fid_bench.backbones.base, fid_bench.backbones.timm, fid_bench.backbones.open_clip, fid_bench.backbones.weights
names = sorted(m for m in sys.modules if m.startswith("fid_bench.") and not m.startswith("fid_bench.backbones"))
heavy = sorted(m for m in ("torch", "timm", "open_clip", "torchvision") if m in sys.modules)
print("above:", names, "heavy:", heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "above: ['fid_bench.errors'] heavy: []" in out.stdout
