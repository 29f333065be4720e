"""The contract both tracks implement: a samples table and a fold in, scores out.

A *detector* is what the ``classifier`` config group builds (``_target_``):
``features_track.detector.FeatureDetector`` (frozen encoder -> cached features -> estimator) or
``finetune.detector.FinetuneDetector`` (a network trained end to end with Lightning). Each detector
class declares its ``track`` (the run tag ``track``); ``detector_track`` reads it from a detector, its
class or a ``classifier`` config node without building anything.

Scores (``SCORE_COLUMNS``) are the only thing evaluation and tracking consume:
    id, label, score (probability of "generated"), split ("val" | "test"), group, fold
and ``sha1`` (``CONTENT_HASH``), the content hash of each row's image: two runs are paired on a row
only when they scored the same bytes under its id (``fid_bench.evaluation.paired``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from fid_bench.balance import BalanceStrategy
from fid_bench.errors import FidBenchError, one_line

if TYPE_CHECKING:
    from fid_bench.data.samples import Samples
    from fid_bench.data.splits import Fold

#: the tracks of the benchmark as the ``track`` run tag names them: frozen features
#: and end-to-end fine-tuning; a detector class may declare another
FEATURES_TRACK = "features"
FINETUNE_TRACK = "finetune"

SCORE_COLUMNS = ["id", "label", "score", "split", "group", "fold"]
#: the per-row content hash of the samples table, carried by every scores frame a job makes
CONTENT_HASH = "sha1"


def score_columns(frame: pd.DataFrame) -> list[str]:
    """``SCORE_COLUMNS``, and ``CONTENT_HASH`` when ``frame`` carries it (runs logged before it did not)."""
    return [*SCORE_COLUMNS, CONTENT_HASH] if CONTENT_HASH in frame.columns else list(SCORE_COLUMNS)


class RunLogger(Protocol):
    """What a detector may log while it works (an MLflow run, or a no-op in tests)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...


class NullLogger:
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass


@dataclass
class Job:
    """Everything one benchmark job needs, built once per job from its ``JobSpec`` (``jobs.experiment.run_job``).

    Detectors get the rest of the configuration as constructor arguments (their ``classifier``
    node interpolates what they read), never the whole config.
    """

    samples: Samples
    balance: BalanceStrategy | None  # None: train on the data as it is
    cache_dir: Path
    output_dir: Path
    logger: RunLogger = field(default_factory=NullLogger)


class Predictor(ABC):
    """A fitted detector reduced to what prediction needs; picklable, logged as an MLflow model."""

    threshold: float = 0.5
    prior: float = 0.5  # training-set share of label 1: the score given to unreadable images

    @abstractmethod
    def predict_paths(self, paths: list[str]) -> np.ndarray:
        """Probability of "generated" for each image path (same preprocessing as training)."""


class Detector(ABC):
    """One track's way from images to scores."""

    #: short name used in tags and the leaderboard
    name: str = "detector"
    #: the track it runs, logged as the run's ``track`` tag (``FEATURES_TRACK``, ``FINETUNE_TRACK`` or a
    #: new word); every detector class declares it, read by ``detector_track``
    track: ClassVar[str]
    #: whether ``cv.leave_one_source_out`` may add folds (one fit per source before the job's own)
    supports_source_folds: bool = True

    def setup(self, job: Job) -> None:
        """Work shared by all folds (e.g. feature extraction through the cache)."""
        return None

    @abstractmethod
    def fit_predict(self, job: Job, fold: Fold) -> pd.DataFrame:
        """Fit on ``fold.train`` (balanced), return scores for ``fold.val`` and ``fold.test`` rows."""

    @abstractmethod
    def predictor(self) -> Predictor:
        """The model fitted by the last ``fit_predict``, ready to be logged and reloaded."""

    def extra_metrics(self) -> dict[str, float]:
        """Metrics the detector measured itself (e.g. cache_hit_ratio, images_per_s)."""
        return {}


def scores_frame(
    table: pd.DataFrame, rows: np.ndarray, scores: np.ndarray, split: str, fold: int
) -> pd.DataFrame:
    """Build a scores frame for ``rows`` (positions in ``table``)."""
    sub = table.iloc[rows]
    return pd.DataFrame(
        {
            "id": sub["id"].to_numpy(),
            "label": sub["label"].to_numpy(dtype=int),
            "score": np.asarray(scores, dtype=float),
            "split": split,
            "group": sub["group"].to_numpy(),
            "fold": fold,
            CONTENT_HASH: sub[CONTENT_HASH].astype(str).to_numpy() if CONTENT_HASH in sub else "",
        }
    )


def detector_track(detector: Any) -> str:
    """The ``track`` a detector declares, from the detector itself, its class, its ``_target_`` string
    or a ``classifier`` config node (``_target_``: the class is imported, nothing is instantiated).

    A class that cannot be imported or declares no track is a one-line ``FidBenchError``.
    """
    target = detector.get("_target_") if isinstance(detector, Mapping) else detector
    if target is None or target == "":
        raise FidBenchError("classifier._target_ is not set: no detector class to read a track from")
    if isinstance(target, str):
        from hydra.utils import get_class

        try:
            target = get_class(target)
        except Exception as err:  # noqa: BLE001 - hydra raises ImportError/ValueError/... by case
            raise FidBenchError(f"classifier._target_={target}: cannot import it ({one_line(err)})") from None
    cls = target if isinstance(target, type) else type(target)
    track = getattr(cls, "track", None)
    if not isinstance(track, str) or not track:
        raise FidBenchError(
            f"{cls.__module__}.{cls.__qualname__} declares no track: give the class a `track` attribute "
            f"({FEATURES_TRACK!r}, {FINETUNE_TRACK!r} or a new name)"
        )
    return track
