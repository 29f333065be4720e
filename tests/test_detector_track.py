"""A detector declares its track; ``detector_track`` reads it from a detector, its class or its config."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from fid_bench.config import group_options
from fid_bench.contract import FEATURES_TRACK, FINETUNE_TRACK, Detector, detector_track
from fid_bench.errors import FidBenchError

#: the rule the ``track`` tag followed before detectors declared it (the fine-tuning detector or not)
FINETUNE_TARGET = "fid_bench.finetune.detector.FinetuneDetector"


class ProbeDetector(Detector):
    """A third kind of detector: neither frozen features nor fine-tuning."""

    track = "probe"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # the classifier node's other keys, as Hydra passes them

    def fit_predict(self, job: Any, fold: Any) -> pd.DataFrame:
        raise NotImplementedError

    def predictor(self) -> Any:
        raise NotImplementedError


class UndeclaredDetector(Detector):
    def fit_predict(self, job: Any, fold: Any) -> pd.DataFrame:
        raise NotImplementedError

    def predictor(self) -> Any:
        raise NotImplementedError


TARGET = f"{__name__}.ProbeDetector"


def test_a_new_detector_kind_gets_the_track_it_declares() -> None:
    assert detector_track(ProbeDetector()) == "probe"
    assert detector_track(ProbeDetector) == "probe"
    # from its config node or _target_ alone: the class is imported, not instantiated
    assert detector_track({"_target_": TARGET, "name": "probe"}) == "probe"
    assert detector_track(TARGET) == "probe"


def test_a_config_selecting_the_new_kind_reads_its_track(compose_cfg: Any) -> None:
    cfg = compose_cfg("model=spectrum", f"classifier._target_={TARGET}")
    assert detector_track(cfg.classifier) == "probe"


def test_a_detector_without_a_track_or_an_unknown_target_is_one_line() -> None:
    with pytest.raises(FidBenchError, match=r"UndeclaredDetector declares no track") as err:
        detector_track(UndeclaredDetector())
    assert "\n" not in str(err.value)
    with pytest.raises(FidBenchError, match=r"classifier._target_=nowhere.Nothing: cannot import it"):
        detector_track({"_target_": "nowhere.Nothing"})
    with pytest.raises(FidBenchError, match=r"classifier._target_ is not set"):
        detector_track({"name": "x"})


@pytest.mark.parametrize("option", group_options("classifier"))
def test_every_classifier_option_keeps_its_track(compose_cfg: Any, option: str) -> None:
    cfg = compose_cfg("model=spectrum", f"classifier={option}")
    before = FINETUNE_TRACK if cfg.classifier._target_ == FINETUNE_TARGET else FEATURES_TRACK
    assert detector_track(cfg.classifier) == before
    assert before == ("finetune" if option == "finetune" else "features")


def test_a_job_of_the_new_kind_is_tagged_with_its_track(compose_cfg: Any) -> None:
    from fid_bench.jobs.job_spec import JobSpec

    def track(*overrides: str) -> str:
        return JobSpec.of_config(compose_cfg(*overrides)).run.tags["track"]

    assert track("model=spectrum", f"classifier._target_={TARGET}") == "probe"
    assert track("model=small_cnn") == FINETUNE_TRACK
    assert track("model=spectrum", "classifier=logreg") == FEATURES_TRACK
