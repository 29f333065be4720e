"""A logged run's scores and decision threshold, read back from the tracking store.

Every benchmark run logs ``predictions.csv`` (``fid_bench.detector.SCORE_COLUMNS``: validation rows
next to test rows, told apart by ``split``) and its validation-chosen ``threshold`` metric
(``TrackedRun.log_scores``). ``compare`` draws the test rows' curves from it and the paired tests
of ``compare`` and the leaderboard pair runs on them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

PREDICTIONS = "predictions.csv"
#: the columns the comparisons read (the group is not needed)
READ_COLUMNS = ("id", "label", "score", "split", "fold")


def download_test_scores(
    client: MlflowClient, run_id: str, dst: Path, *, status: str | None = None
) -> pd.DataFrame:
    """The ``split == "test"`` rows of run ``run_id``'s ``predictions.csv`` (ids as text), downloaded
    into ``dst``; a one-line ``FidBenchError`` when the run has none."""
    from mlflow.exceptions import MlflowException

    # one small CSV per run: MLflow's per-download progress bars would only be noise
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = client.download_artifacts(run_id, PREDICTIONS, str(dst))
    except (MlflowException, OSError):
        state = f" (status {status})" if status else ""
        raise FidBenchError(
            f"run {run_id} has no {PREDICTIONS} artifact{state}; only finished benchmark runs can be compared"
        ) from None
    # only the columns compared: a large test set's group column would only cost memory
    scores = pd.read_csv(local, dtype={"id": str}, usecols=lambda c: c in READ_COLUMNS)
    missing = [c for c in ("label", "score", "split") if c not in scores.columns]
    if missing:
        raise FidBenchError(f"run {run_id}: {PREDICTIONS} lacks column(s) {missing}")
    test = scores[scores["split"] == "test"]
    if test.empty:
        raise FidBenchError(f"run {run_id}: {PREDICTIONS} has no split=='test' rows to compare")
    return test.reset_index(drop=True)


def held_out_scores(client: MlflowClient, run: Run, dst: Path) -> pd.DataFrame:
    """The ``split == "test"`` rows of a run's ``predictions.csv``."""
    return download_test_scores(client, run.info.run_id, dst, status=run.info.status)


def decision_threshold(run: Run) -> float | None:
    """The threshold the run chose on its validation rows (its ``threshold`` metric); None if not logged."""
    value = run.data.metrics.get("threshold")
    return float(value) if value is not None and math.isfinite(value) else None
