"""Helpers shared by test_tracking.py and test_leaderboard.py (an importable module, so that
pickled objects defined here can be loaded back)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from fid_bench.contract import Predictor


class BrightnessPredictor(Predictor):
    """Probability of "generated" = mean brightness of the image (reads the file, like a real one)."""

    def __init__(self, threshold: float = 0.5, prior: float = 0.25) -> None:
        self.threshold = threshold
        self.prior = prior

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        return np.array([np.asarray(Image.open(p).convert("L"), dtype=float).mean() / 255.0 for p in paths])


def grey_image(path: Path, level: int, size: int = 8) -> Path:
    Image.new("RGB", (size, size), (level, level, level)).save(path)
    return path


def make_template_store(folder: Path) -> Path:
    """An empty, fully migrated MLflow SQLite store (creating one takes seconds: do it once)."""
    from mlflow.tracking import MlflowClient

    path = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def install_store(template: Path, tmp_path: Path) -> str:
    """Copy the template store to tmp_path/mlruns/mlflow.db; returns its tracking URI."""
    dst = tmp_path / "mlruns" / "mlflow.db"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dst)
    return f"sqlite:///{dst}"
