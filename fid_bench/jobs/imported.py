"""``fid-bench import-predictions``: another tool's scores logged as a run of kind ``imported``.

The scores must be on the rows our runs are scored on, so the reference rows (``id``, ``label``,
``split``, ``group``) come from one of two places:

* ``run_reference``: an existing run's ``predictions.csv``: exactly the rows that run was scored on;
* ``config_reference``: a composed config, read and split exactly as a job splits it (same data,
  ``seed`` and fractions give the same validation and test rows).

The file is aligned with them by id (``fid_bench.imported_scores``: bad files are one line, missing ids
counted and listed, never dropped silently). The threshold is chosen on the file's validation rows
when it scores them, as a job chooses its own, else it is 0.5; the run says which. The run then logs
what a job logs (``fid_bench.tracking.scored_run``), the import's counts as metrics and the missing
ids as ``missing_ids.csv``; it holds no model, so ``predict`` and ``promote`` refuse it while the
leaderboard, ``compare`` and the paired tests take it like any job.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fid_bench.backbones.weights import file_sha256
from fid_bench.contract import CONTENT_HASH
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.held_out import HeldOutSettings, threshold_and_source
from fid_bench.imported_scores import ImportReport, align_predictions, read_predictions_csv
from fid_bench.tracking.kinds import DATA_TAGS, RunKind
from fid_bench.tracking.lineage import DatasetPart, copy_dataset_inputs, data_source, fold_parts
from fid_bench.tracking.logged_scores import log_held_out
from fid_bench.tracking.run_queries import run_scores
from fid_bench.tracking.scored_run import scored_run

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

MISSING_IDS = "missing_ids.csv"
UNKNOWN_IDS = "unknown_ids.csv"
REFERENCE_COLUMNS = ["id", "label", "split", "group", "fold"]


@dataclass
class Reference:
    """The rows an import is aligned with, and what the run takes from where they came from."""

    rows: pd.DataFrame  # REFERENCE_COLUMNS (and CONTENT_HASH when known), validation and test rows
    description: str  # for params and messages: "run <id>" or "config data=folder seed=42"
    experiment: str  # where a run scored on these rows is logged by default
    settings: HeldOutSettings
    tags: dict[str, str] = field(default_factory=dict)
    source_run: Run | None = None  # the run the rows come from: its dataset inputs are copied
    parts: list[DatasetPart] = field(default_factory=list)  # else: the rows as dataset inputs


def run_reference(client: MlflowClient, run: Run) -> Reference:
    """The validation and test rows ``run`` was scored on (its ``predictions.csv``)."""
    scores = run_scores(client, run)
    rows = scores[scores["split"].isin(("val", "test"))].copy()
    for col, default in (("group", ""), ("fold", 0)):
        if col not in rows.columns:
            rows[col] = default
    # the rows' content hashes when the run logged them (an older run did not: neither will the import)
    columns = [*REFERENCE_COLUMNS, *([CONTENT_HASH] if CONTENT_HASH in rows.columns else [])]
    return Reference(
        rows=rows[columns].reset_index(drop=True),
        description=f"run {run.info.run_id}",
        experiment=client.get_experiment(run.info.experiment_id).name,
        settings=HeldOutSettings.of_params(run.data.params, HeldOutSettings.packaged()),
        tags={k: run.data.tags[k] for k in DATA_TAGS if run.data.tags.get(k)},
        source_run=run,
    )


def config_reference(cfg: DictConfig, overrides: Sequence[str] = ()) -> Reference:
    """The validation and test rows a job with config ``cfg`` is scored on (one hold-out split)."""
    from omegaconf import OmegaConf

    from fid_bench.data.readers import read_configured_samples
    from fid_bench.data.splits import FoldPlan

    samples = read_configured_samples(cfg)
    folds = FoldPlan.of_config(cfg).job_folds(samples.table)
    if len(folds) != 1:
        raise FidBenchError(
            f"the config makes {len(folds)} folds; imported predictions are aligned with one hold-out "
            "split (leave cv.folds and cv.leave_one_group_out unset)"
        )
    (fold,) = folds
    table = samples.table
    parts = []
    for split, positions in (("val", fold.val), ("test", fold.test)):
        sub = table.iloc[np.asarray(positions)]
        parts.append(
            pd.DataFrame(
                {
                    "id": sub["id"].astype(str),
                    "label": sub["label"].astype(int),
                    "split": split,
                    "group": sub["group"].fillna("").astype(str),
                    "fold": fold.index,
                    CONTENT_HASH: sub[CONTENT_HASH].astype(str),
                }
            )
        )
    root = OmegaConf.select(cfg, "data.root", default=None)
    lineage = fold_parts(table, folds, name=samples.name, source=data_source(root), final=True)
    # the data group the user chose (as a job's "data" tag), else the data set's own name
    chosen = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "data"]
    data = chosen[-1] if chosen else str(cfg.data.get("name", samples.name))
    return Reference(
        rows=pd.concat(parts, ignore_index=True),
        description=" ".join(["config", *overrides, f"seed={cfg.seed}"]),
        experiment=str(cfg.tracking.experiment),
        settings=HeldOutSettings.of_config(cfg),
        tags={"data": data, "data_name": samples.name, "data_fingerprint": samples.fingerprint()},
        parts=[p for p in lineage if p.context in ("validation", "test")],
    )


@dataclass
class ImportedRun:
    """What ``log_import`` logged."""

    run_id: str
    experiment: str
    report: ImportReport
    metrics: dict[str, float]
    threshold: float
    threshold_source: str


def log_import(
    client: MlflowClient,
    uri: str,
    path: str | Path,
    name: str,
    reference: Reference,
    *,
    experiment: str | None = None,
    missing: str = "report",
) -> ImportedRun:
    """Align the file at ``path`` with ``reference`` and log it as a run named ``name``.

    ``missing="error"`` refuses a file that leaves reference rows unscored. Every check runs before
    the run is created, so a refused file leaves no run.
    """
    path = Path(path)
    scores, report = align_predictions(read_predictions_csv(path), reference.rows, missing=missing)
    threshold, threshold_source = threshold_and_source(scores)
    experiment = experiment or reference.experiment
    params: dict[str, Any] = {
        "name": name,
        "file": str(path.resolve()),
        "reference": reference.description,
        "threshold_source": threshold_source,
        **reference.settings.params(),
    }
    tags = {
        "model": name,
        "classifier": "imported",
        "imported_file_sha256": file_sha256(path),
        "threshold_source": threshold_source,
        **reference.tags,
    }
    if reference.source_run is not None:
        tags["fid_bench.reference_run"] = reference.source_run.info.run_id
    with scored_run(
        uri, experiment, kind=RunKind.IMPORTED, name=name, tags=tags, params=params,
        source="fid-bench import-predictions",
    ) as run:  # fmt: skip
        metrics = log_held_out(run, scores, reference.settings, threshold=threshold)
        counts = report.metrics()
        run.log_metrics(counts)
        if reference.source_run is not None:
            copy_dataset_inputs(client, run.run_id, [reference.source_run])
        else:
            run.log_datasets(reference.parts)
        with tempfile.TemporaryDirectory(prefix="fid_bench-import-") as tmp:
            if len(report.missing):
                report.missing.to_csv(Path(tmp) / MISSING_IDS, index=False)
                run.log_artifact(Path(tmp) / MISSING_IDS)
            if report.unknown:
                pd.DataFrame({"id": report.unknown}).to_csv(Path(tmp) / UNKNOWN_IDS, index=False)
                run.log_artifact(Path(tmp) / UNKNOWN_IDS)
    return ImportedRun(run.run_id, experiment, report, {**metrics, **counts}, threshold, threshold_source)
