"""Dataset lineage: which rows each run trained, validated and was tested on, as MLflow dataset inputs.

Every run logs one ``mlflow.data`` input per part it used (context tag ``train``, ``validation``,
``test``, ``cross_validation`` or ``extra``), each named after the data set, sourced at the data
root and digested from its rows' ids, labels and content hashes (``sha1``, which the readers and the
cache already compute). Two runs that saw the same bytes therefore show the same digest in the UI's
dataset column, and editing a single image changes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fid_bench.tracking.store import first_line

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

#: MLflow's input tag naming the role of a dataset in a run
CONTEXT_TAG = "mlflow.data.context"
#: digest length shown in the UI (hex characters of a sha1)
DIGEST_LENGTH = 12
#: the columns a logged dataset carries (paths stay out: they differ between machines)
DATASET_COLUMNS = ["id", "label", "split", "group", "sha1"]


def rows_digest(table: pd.DataFrame) -> str:
    """Hash of the (id, label, sha1) of every row, independent of row order."""
    cols = [c for c in ("id", "label", "sha1") if c in table.columns]
    rows = table[cols].astype(str).sort_values(cols, kind="mergesort")
    h = hashlib.sha1()
    for row in rows.itertuples(index=False):
        h.update("\x1f".join(row).encode())
        h.update(b"\n")
    return h.hexdigest()[:DIGEST_LENGTH]


@dataclass(frozen=True)
class DatasetPart:
    """The rows of one context (``train``, ``validation``, ...) of a run's data."""

    context: str
    name: str
    source: str
    rows: pd.DataFrame

    @property
    def digest(self) -> str:
        return rows_digest(self.rows)


def fold_parts(
    table: pd.DataFrame, folds: Sequence[Fold], *, name: str, source: str, final: bool
) -> list[DatasetPart]:
    """The contexts a job's folds use.

    One fold: ``train``, ``validation`` and (final runs only: a search trial never reads it) ``test``.
    Several folds (K-fold, leave-one-group-out): every row is trained on in some fold and tested in
    another, so the rows the folds used are one ``cross_validation`` input.
    """
    if not folds:
        return []
    if len(folds) == 1:
        fold = folds[0]
        named = [("train", fold.train), ("validation", fold.val)]
        if final:
            named.append(("test", fold.test))
        return [DatasetPart(ctx, name, source, table.iloc[np.asarray(idx)]) for ctx, idx in named]
    used = np.unique(np.concatenate([np.concatenate([f.train, f.val, f.test]) for f in folds]))
    return [DatasetPart("cross_validation", name, source, table.iloc[used])]


def data_source(root: object) -> str:
    """The data root as an absolute path ("" when the data set has none)."""
    if root in (None, ""):
        return ""
    return str(Path(str(root)).expanduser().resolve())


def log_dataset_parts(client: MlflowClient, run_id: str, parts: Sequence[DatasetPart]) -> None:
    """Log ``parts`` as dataset inputs of run ``run_id``; a store that refuses is a warning, not a failure."""
    import warnings

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for part in parts:
        frame = part.rows[[c for c in DATASET_COLUMNS if c in part.rows.columns]].reset_index(drop=True)
        with warnings.catch_warnings():
            # a local folder matches two equivalent source kinds; MLflow picks one and says so
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            # the schema is informative only; labels are never missing
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
            dataset = mlflow.data.from_pandas(
                frame,
                source=part.source or part.name,
                targets="label",
                name=part.name,
                digest=part.digest,
            )
            entity = dataset._to_mlflow_entity()  # the schema is inferred here
        inputs.append(DatasetInput(entity, tags=[InputTag(CONTEXT_TAG, part.context)]))
    if not inputs:
        return
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception as err:  # noqa: BLE001 - lineage is informative: the job's results still count
        log.warning("dataset inputs not logged for run %s: %s", run_id, first_line(err))


def copy_dataset_inputs(
    client: MlflowClient,
    run_id: str,
    sources: Sequence[Run],
    contexts: Sequence[str] = ("validation", "test"),
) -> int:
    """Log the dataset inputs of ``sources`` in ``contexts`` as inputs of run ``run_id`` (each once).

    A run made from other runs' scores (an ensemble, an import aligned with a run's rows) used
    exactly their rows: it shows the same digests, without reading the images again. Returns how
    many inputs were logged; a store that refuses is a warning, as in ``log_dataset_parts``.
    """
    from mlflow.entities import DatasetInput

    seen: set[tuple[str, str, str]] = set()
    inputs = []
    for source in sources:
        for item in source.inputs.dataset_inputs if source.inputs is not None else []:
            context = next((t.value for t in item.tags if t.key == CONTEXT_TAG), "")
            key = (item.dataset.name, item.dataset.digest, context)
            if context in contexts and key not in seen:
                seen.add(key)
                inputs.append(DatasetInput(item.dataset, tags=list(item.tags)))
    if not inputs:
        return 0
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception as err:  # noqa: BLE001 - lineage is informative: the run's results still count
        log.warning("dataset inputs not logged for run %s: %s", run_id, first_line(err))
        return 0
    return len(inputs)
