"""``classifier.normalise``: the step each option puts before the estimator, the older ``scale`` switch,
and the defaults the classifier configs carry."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fid_bench.errors import FidBenchError
from fid_bench.features_track.detector import FeatureDetector


def steps(**kw) -> list[str]:
    pipe, _ = FeatureDetector(LogisticRegression(), **kw)._pipeline_for(None)
    return [name for name, _ in pipe.steps]


def test_each_option_puts_its_step_before_the_estimator() -> None:
    assert steps(normalise="standard") == ["scale", "estimator"]
    assert steps(normalise="l2") == ["l2", "estimator"]
    assert steps(normalise="none") == steps() == ["estimator"]
    # the older switch keeps its meaning, whatever normalise says
    assert steps(scale=True, normalise="l2") == ["scale", "estimator"]
    assert steps(scale=False, normalise="l2") == ["estimator"]
    with pytest.raises(FidBenchError, match="normalise must be one of"):
        FeatureDetector(LogisticRegression(), normalise="minmax")


def test_l2_rows_have_unit_length_before_the_estimator() -> None:
    pipe, _ = FeatureDetector(LogisticRegression(), normalise="l2")._pipeline_for(None)
    x = np.random.default_rng(0).normal(size=(20, 5)) * 10
    y = np.r_[np.zeros(10), np.ones(10)]
    pipe.fit(x, y)
    np.testing.assert_allclose(np.linalg.norm(pipe.named_steps["l2"].transform(x), axis=1), 1.0)


@pytest.mark.parametrize(
    "clf,expected",
    [("logreg", "auto"), ("knn", "auto"), ("rf", "auto"), ("gboost", "none"), ("lightgbm", "none")],
)
def test_the_configs_carry_the_measured_defaults(compose_cfg, clf: str, expected: str) -> None:
    from hydra.utils import instantiate

    det = instantiate(compose_cfg(f"classifier={clf}").classifier)
    assert det.normalise == expected


def test_auto_is_l2_for_one_learned_embedding_and_standard_otherwise(tmp_path) -> None:
    from fid_bench.backbones.timm import TimmBackbone
    from fid_bench.features.aligned import AlignedEncoder
    from fid_bench.features.encoders import FrozenEncoder
    from fid_bench.features.onnx import OnnxEncoder
    from fid_bench.features.spectrum import SpectrumEncoder
    from fid_bench.features_track.detector import auto_normalisation

    onnx = OnnxEncoder(path=str(tmp_path / "x.onnx"))
    assert auto_normalisation(onnx) == "l2"
    assert auto_normalisation(OnnxEncoder(path=str(tmp_path / "x.onnx"), layers="all")) == "standard"
    assert auto_normalisation(FrozenEncoder(TimmBackbone("test_vit", pretrained=False))) == "l2"
    assert auto_normalisation(SpectrumEncoder()) == "standard"
    assert auto_normalisation(AlignedEncoder(onnx, {"format": "jpeg", "quality": 90})) == "l2"
