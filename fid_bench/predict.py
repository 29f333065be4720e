"""Inference: load a run's ``Predictor`` and score images with it.

The model is the MLflow model ``model`` of a run: a pickled ``fid_bench.contract.Predictor`` (a
fine-tuned network, or an encoder plus a classifier on cached features). Its ``predict_paths``
applies the training preprocessing; its ``threshold`` and ``prior`` come from training.

An image that cannot be read is never dropped: it gets the training prior as its probability and
is reported.

Loading a pickle runs code, so the model must come from the tracking store itself (see
``fid_bench.tracking.model_location``) unless the caller allows external models.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.data.inputs import Inputs
from fid_bench.errors import FidBenchError, one_line
from fid_bench.tracking.kinds import MODEL_NAME
from fid_bench.tracking.model_location import (
    ALLOW_EXTERNAL_HINT,
    check_model_location,
    fetch_checked_model,
    model_uri_locations,
    store_roots,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from fid_bench.contract import Predictor

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- loading the predictor


def load_checked_predictor(
    model_uri: str,
    locations: Sequence[str],
    client: MlflowClient,
    uri: str,
    *,
    allow_external: bool,
    hint: str = ALLOW_EXTERNAL_HINT,
) -> Predictor:
    """Check where the model's files come from, copy exactly those files, then unpickle its ``Predictor``.

    The predictor is loaded from that copy, never by handing ``model_uri`` back to MLflow to resolve
    a second time: the locations checked are the locations read, even if the store changes meanwhile.
    """
    import tempfile

    roots = store_roots(uri, client)
    check_model_location(locations, roots, allow_external=allow_external, hint=hint)
    from fid_bench.tracking.pyfunc import load_predictor_folder

    with tempfile.TemporaryDirectory(prefix="fid_bench-model-") as tmp:
        dst = Path(tmp) / "model"
        dst.mkdir()
        if not fetch_checked_model(locations, dst, uri, allow_external=allow_external, hint=hint):
            raise FidBenchError(f"cannot load the model {model_uri}: no files at {', '.join(locations)}")
        if not (dst / "MLmodel").is_file():
            raise FidBenchError(f"cannot load the model {model_uri}: no MLmodel file (not an MLflow model)")
        # every path its MLmodel names is checked to lie inside the copy; fid_bench unpickles the predictor
        predictor = load_predictor_folder(dst, model_uri)
    check_predictor_files(predictor)
    return predictor


def check_predictor_files(predictor: Predictor) -> None:
    """Every file a predictor reads besides its pickle (an ONNX graph) is the file it was trained with:
    each predictor that records them checks them (``check_files``), an ensemble's members included."""
    for member in getattr(predictor, "members", None) or []:
        check_predictor_files(member)
    check = getattr(predictor, "check_files", None)
    if callable(check):
        check()


def load_run_predictor(client: MlflowClient, uri: str, run_id: str, *, hint: str) -> Predictor:
    """The predictor of run ``run_id``'s model (``runs:/<run id>/model``), through the location check,
    with no way around it (``hint``: what a refusal says instead of ``--allow-external``)."""
    model_uri = f"runs:/{run_id}/{MODEL_NAME}"
    locations = model_uri_locations(client, model_uri)
    return load_checked_predictor(model_uri, locations, client, uri, allow_external=False, hint=hint)


# --------------------------------------------------------------------------- scoring


_DECODE_FAILURES = (FidBenchError, OSError, ValueError)


def predict_all(
    predictor: Predictor, inputs: Inputs, *, batch_size: int = 1024, progress: bool = True
) -> np.ndarray:
    """Score every readable input in batches; unreadable ones get ``predictor.prior``.

    A batch that fails on a bad file is retried image by image, so one broken file costs only itself;
    a NaN score is treated the same way. Newly found failures are added to ``inputs.unreadable``.
    """
    from tqdm import tqdm

    prior = float(getattr(predictor, "prior", 0.5))
    scores = np.full(len(inputs.ids), np.nan, dtype=np.float64)
    todo = [i for i in range(len(inputs.ids)) if i not in inputs.unreadable]
    with tqdm(total=len(todo), unit="img", desc="predict", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                out = _checked(predictor.predict_paths([inputs.paths[i] for i in batch]), len(batch))
            except _DECODE_FAILURES as err:
                log.debug("batch at %d failed (%s); scoring its images one by one", start, err)
                out = np.array([_predict_one(predictor, inputs, i) for i in batch])
            scores[batch] = out
            _note_reported_unreadable(predictor, inputs, batch)
            bar.update(len(batch))
    for i in np.flatnonzero(np.isnan(scores)):
        inputs.unreadable.setdefault(int(i), "no score")
    scores[list(inputs.unreadable)] = prior
    return scores


def _note_reported_unreadable(predictor: Predictor, inputs: Inputs, batch: list[int]) -> None:
    """Predictors that score unreadable images themselves list them as ``unreadable`` (path, reason)."""
    reported = getattr(predictor, "unreadable", None) or []
    if not reported:
        return
    by_path: dict[str, list[int]] = {}
    for i in batch:
        by_path.setdefault(inputs.paths[i], []).append(i)
    for path, reason in reported:
        for i in by_path.get(str(path), []):
            inputs.unreadable[i] = one_line(reason)


def _checked(out: Any, n: int) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise FidBenchError(f"the model returned {arr.size} scores for {n} images")
    return arr


def _predict_one(predictor: Predictor, inputs: Inputs, i: int) -> float:
    try:
        return float(_checked(predictor.predict_paths([inputs.paths[i]]), 1)[0])
    except _DECODE_FAILURES as err:
        inputs.unreadable[i] = one_line(err)
        return math.nan


# --------------------------------------------------------------------------- feature cache


def default_cache_dir() -> Path:
    """The feature cache of ``features.cache_dir``'s default: $FID_BENCH_CACHE_DIR or ~/.cache/fid_bench."""
    return Path(os.environ.get("FID_BENCH_CACHE_DIR") or Path.home() / ".cache" / "fid_bench")


def choose_feature_cache(predictor: Predictor, explicit: Path | None) -> None:
    """Embedding models extract features for new images through the training run's cache folder;
    ``explicit`` (``--cache-dir``) overrides it, and an unusable stored folder (another machine) falls back to the
    default cache."""
    members = getattr(predictor, "members", None)
    if members:  # an ensemble: each member extracts through its own cache
        for member in members:
            choose_feature_cache(member, explicit)
        return
    stored = getattr(predictor, "cache_dir", None)
    if stored is None:
        return  # a fine-tuned network has no feature cache
    if explicit is not None:
        predictor.cache_dir = str(explicit.expanduser())
        return
    try:
        Path(stored).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning(
            "feature cache %s of the run is unusable here (%s); using %s", stored, err, default_cache_dir()
        )
        predictor.cache_dir = str(default_cache_dir())
