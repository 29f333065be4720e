"""A fitted ``Predictor`` as an MLflow model: log it with a run, load it back for prediction.

The MLflow model (artifact ``model``) takes a DataFrame with a ``path`` column and returns a
DataFrame with ``score`` (probability of "generated") and ``label`` (1 when score >= the
predictor's threshold). The predictor itself is a plain pickle inside the model, so loading needs
the fid_bench package importable, nothing else.

This module imports mlflow at the top: import it only where a model is logged or loaded.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import pickle
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd

from fid_bench import __version__
from fid_bench.contract import Predictor
from fid_bench.errors import FidBenchError, first_line
from fid_bench.tracking.kinds import MODEL_NAME
from fid_bench.tracking.model_location import PREDICTOR_ARTIFACT, checked_predictor_file
from fid_bench.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

# distributions a predictor may need at load time, keyed by the module that shows they are in use
_OPTIONAL_REQUIREMENTS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "open_clip": "open_clip_torch",
    "onnxruntime": "onnxruntime",
    "lightgbm": "lightgbm",
    "pytorch_lightning": "pytorch-lightning",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
}


#: modules renamed since models were first logged: a pickle naming an old path loads from the new one
RENAMED_MODULES = {
    "fid_bench.detector": "fid_bench.contract",
    "fid_bench.classical.detector": "fid_bench.features_track.detector",
    "fid_bench.classical.pretrained": "fid_bench.features_track.pretrained",
    "fid_bench.ensemble": "fid_bench.ensemble_scores",
    "fid_bench.imported": "fid_bench.imported_scores",
    "fid_bench.features.augment": "fid_bench.features.augmented",
}


class _RenamingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(RENAMED_MODULES.get(module, module), name)


def load_pickle(fh: Any) -> Any:
    """``pickle.load`` that also reads predictors pickled before a module was renamed."""
    return _RenamingUnpickler(fh).load()


class PredictorModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper around a fid_bench ``Predictor`` (unpickled from the model's artifacts)."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[PREDICTOR_ARTIFACT], "rb") as fh:
            self.predictor = load_pickle(fh)

    # model_input must be annotated pd.DataFrame: MLflow reads predict's type hints, warns on other
    # hints and keeps the explicit signature logged with the model for this one
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.predictor is None:
            raise FidBenchError("model used before its predictor was loaded")
        return predict_frame(self.predictor, model_input)


def predict_frame(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """``score`` and ``label`` for each row's ``path`` (index kept)."""
    if not isinstance(frame, pd.DataFrame) or "path" not in frame.columns:
        raise FidBenchError("prediction input must be a table with a 'path' column")
    paths = [str(p) for p in frame["path"].tolist()]
    scores = np.asarray(predictor.predict_paths(paths), dtype=float).reshape(-1)
    if len(scores) != len(paths):
        raise FidBenchError(f"predictor returned {len(scores)} scores for {len(paths)} paths")
    labels = (scores >= float(predictor.threshold)).astype(np.int64)
    return pd.DataFrame({"score": scores, "label": labels}, index=frame.index)


def requirements() -> list[str]:
    """Pinned requirements, listed explicitly so MLflow does not infer them by importing the model."""
    names = ["mlflow", "numpy", "pandas"]
    names += [dist for module, dist in _OPTIONAL_REQUIREMENTS.items() if module in sys.modules]
    pins = [f"fid_bench=={__version__}"]
    for name in dict.fromkeys(names):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "path")]),
        outputs=Schema([ColSpec("double", "score"), ColSpec("long", "label")]),
    )


def log_predictor_model(predictor: Predictor, run_id: str) -> str:
    """Log ``predictor`` as artifact ``model`` of the active run ``run_id``; returns the model URI."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        raise RuntimeError(f"run {run_id} must be the active MLflow run to log a model into it")
    if not isinstance(predictor, Predictor):
        raise TypeError(f"expected a fid_bench Predictor, got {type(predictor).__name__}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.pkl"
        with open(path, "wb") as fh:
            pickle.dump(predictor, fh, protocol=pickle.HIGHEST_PROTOCOL)
        # "models from code": the wrapper is rebuilt from this tiny file instead of being cloudpickled
        code = Path(tmp) / "fid_bench_model.py"
        code.write_text(_MODEL_CODE)
        with warnings.catch_warnings():
            # the signature is explicit; an input example would need real images
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(code),
                artifacts={PREDICTOR_ARTIFACT: str(path)},
                pip_requirements=requirements(),
                signature=_signature(),
                metadata={"predictor_class": f"{type(predictor).__module__}.{type(predictor).__qualname__}"},
            )
    return info.model_uri


_MODEL_CODE = """\
import mlflow.models

from fid_bench.tracking.pyfunc import PredictorModel

mlflow.models.set_model(PredictorModel())
"""


def model_uri_of(ref: str) -> str:
    """A run id (32 hex digits) means that run's ``model``; anything else is already a model URI."""
    return f"runs:/{ref}/{MODEL_NAME}" if re.fullmatch(r"[0-9a-f]{32}", ref) else ref


def load_predictor(ref: str, tracking_uri: str | None = None) -> Predictor:
    """The ``Predictor`` logged by run ``ref`` (a run id), at model URI ``ref``, or in model folder ``ref``.

    No location check here (``fid_bench.predict.load_checked_predictor`` does that): the model's files
    are downloaded as MLflow finds them, then loaded by ``load_predictor_folder``.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri:
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    if Path(ref).is_dir():
        return load_predictor_folder(Path(ref), ref)
    uri = model_uri_of(ref)
    with tempfile.TemporaryDirectory(prefix="fid_bench-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(uri, dst_path=tmp)
        except Exception as err:  # noqa: BLE001 - a missing run/model is a one-line user error
            raise FidBenchError(f"cannot load the model {uri}: {first_line(err)}") from None
        return load_predictor_folder(Path(local), uri)


def load_predictor_folder(folder: Path, model_uri: str) -> Predictor:
    """The ``Predictor`` of the MLflow model in ``folder``, unpickled by fid_bench itself.

    MLflow's loader is never handed the folder: its MLmodel file could name files and code outside
    it. ``checked_predictor_file`` checks every path the MLmodel names and returns the predictor's
    pickle inside ``folder``; ``model_uri`` names the model in messages.
    """
    path = checked_predictor_file(folder, model_uri)
    try:
        with open(path, "rb") as fh:
            predictor = load_pickle(fh)
    except Exception as err:  # noqa: BLE001 - a broken or foreign pickle is a one-line user error
        raise FidBenchError(f"cannot load the model {model_uri}: {first_line(err)}") from None
    # duck-typed like the rest of prediction: an unpickled dict or estimator would fail later, deep inside
    if not callable(getattr(predictor, "predict_paths", None)):
        raise FidBenchError(f"{model_uri} is not a fid_bench model (no predictor with predict_paths inside)")
    return predictor
