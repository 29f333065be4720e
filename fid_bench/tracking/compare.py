"""Compare logged runs: their test-split ROC and precision-recall curves overlaid, plus a metric table.

The curves come from each run's ``predictions.csv`` artifact (``split == "test"`` rows); the table
from the metrics each run logged. For exactly two runs, ``paired=PairedOptions()`` adds the paired
report (``fid_bench.tracking.paired_runs``: DeLong's test of the ROC-AUC difference and a paired bootstrap
of F1, accuracy and TPR at a fixed FPR on the rows both runs scored, matched by id), written as
``<stem>_paired.csv`` and ``<stem>_paired.md``. Everything is written next to ``out_path`` (PNG, CSV,
Markdown) and logged to MLflow under ``comparison/``:

* to ``log_to_run_id`` when given (the multirun parent passes its own id for its top children);
* else to the runs' parent when they all share one (the sweep they came from);
* else to a new run tagged ``fid_bench.kind=comparison`` in the first run's experiment.

A comparison run holds no model, and its kind keeps it out of the leaderboard and ``predict --run
best``; its only metrics and params are the paired report's key figures (``paired/roc_auc_diff``,
``paired/roc_auc_p``, ..., ``paired/run_a``, ``paired/verdict``), when there is one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fid_bench import markdown
from fid_bench.errors import FidBenchError
from fid_bench.evaluation import metric_registry
from fid_bench.evaluation.plots import overlay_curves_png
from fid_bench.tracking.kinds import RunKind
from fid_bench.tracking.leaderboard import Query, leaderboard
from fid_bench.tracking.paired_runs import PairedReport, paired_report
from fid_bench.tracking.run_factory import start_run
from fid_bench.tracking.run_queries import get_run, held_out_scores, make_client
from fid_bench.tracking.run_queries import tracking_uri as resolve_uri
from fid_bench.tracking.store import OpenExperiment

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

ARTIFACT_DIR = "comparison"
COMPARED_TAG = "fid_bench.compared_runs"
#: metric columns of the table, in this order, when any compared run logged them
TABLE_METRICS = metric_registry.names(tabulated=True)
#: tags written by the tracker that say what a run was (shown when present)
TABLE_TAGS = ("model", "classifier", "balance")


@dataclass(frozen=True)
class PairedOptions:
    """The paired report's settings: bootstrap resamples (0: DeLong only), alpha and seed."""

    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0


@dataclass
class Comparison:
    """What ``compare_runs`` produced: files written, the table, the drawn curves, where it was logged,
    and for two runs the paired report."""

    figure: Path
    table: pd.DataFrame
    table_csv: Path
    table_md: Path
    curves: dict[str, Any]  # name -> (roc Curve, pr Curve), as drawn
    logged_to: str | None = None
    paired: PairedReport | None = None
    paired_csv: Path | None = None
    paired_md: Path | None = None

    @property
    def files(self) -> list[Path]:
        """Every file written, in the order they are logged."""
        extra = [f for f in (self.paired_csv, self.paired_md) if f is not None]
        return [self.figure, self.table_csv, self.table_md, *extra]


def _client(tracking_uri: str | None) -> MlflowClient:

    # one small CSV per run: MLflow's per-download progress bars would only be noise
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return make_client(resolve_uri(tracking_uri))


def get_runs(client: MlflowClient, run_ids: Sequence[str]) -> list[Run]:
    """The runs, in the given order (full ids or unique prefixes); an unknown id is a one-line error."""
    if not run_ids:
        raise FidBenchError("no runs to compare")
    runs = [get_run(client, run_id) for run_id in run_ids]
    full = [r.info.run_id for r in runs]
    dup = sorted({r for r in full if full.count(r) > 1})
    if dup:
        raise FidBenchError(f"run(s) given twice: {dup}")
    return runs


def run_label(run: Run) -> str:
    """A short legend name: the tracker's tags (model/classifier/balance) or the run name, plus the id."""
    tags = run.data.tags
    parts = [tags[t] for t in TABLE_TAGS if tags.get(t)]
    name = "/".join(parts) if parts else (run.info.run_name or "run")
    return f"{name} [{run.info.run_id[:8]}]"


def metric_table(runs: Sequence[Run], labels: Sequence[str], n_test: Sequence[int]) -> pd.DataFrame:
    """One row per run: id, name, the tracker's tags, and the logged metrics of ``TABLE_METRICS``."""
    rows = []
    for run, label, n in zip(runs, labels, n_test, strict=True):
        row: dict[str, Any] = {"run_id": run.info.run_id, "name": label}
        row.update({t: run.data.tags.get(t, "") for t in TABLE_TAGS})
        row["n_test"] = n
        metrics = run.data.metrics
        for m in TABLE_METRICS:
            row[m] = metrics.get(m, math.nan)
            if f"{m}_std" in metrics:
                row[f"{m}_std"] = metrics[f"{m}_std"]
        rows.append(row)
    table = pd.DataFrame(rows)
    # drop metric columns no run logged, and tag columns no run carries
    empty = [c for c in table.columns if c not in ("run_id", "name") and table[c].isna().all()]
    empty += [t for t in TABLE_TAGS if t in table.columns and (table[t] == "").all()]
    return table.drop(columns=list(dict.fromkeys(empty)))


def table_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (floats to 4 decimals, NaN as a dash; numbers right-aligned)."""

    def text(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    numeric = [pd.api.types.is_numeric_dtype(dtype) for dtype in table.dtypes]
    rows = [[text(v) for v in row] for row in table.itertuples(index=False)]
    return markdown.table([str(c) for c in table.columns], rows, numeric) + "\n"


def _shared_parent(runs: Sequence[Run]) -> str | None:
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    return parents.pop() if len(parents) == 1 and None not in parents else None


def paired_paths(out: Path) -> tuple[Path, Path]:
    """Where the paired report goes next to the figure ``out``: ``<stem>_paired.csv`` and ``.md``."""
    return out.with_name(f"{out.stem}_paired.csv"), out.with_name(f"{out.stem}_paired.md")


def _new_comparison_run(client: MlflowClient, runs: Sequence[Run]) -> str:
    ids = [r.info.run_id for r in runs]
    experiment = OpenExperiment(client, runs[0].info.experiment_id, str(client.tracking_uri))
    tags = {COMPARED_TAG: ",".join(ids)}
    return start_run(RunKind.COMPARISON, experiment, f"compare-{len(ids)}-runs", tags).run_id


def compare_runs(
    run_ids: Sequence[str],
    out_path: str | Path,
    log_to_run_id: str | None = None,
    *,
    tracking_uri: str | None = None,
    log_artifacts: bool = True,
    paired: PairedOptions | None = None,
) -> Comparison:
    """Draw the runs' test curves into ``out_path`` (PNG) with a metric table, and log both.

    ``log_to_run_id``: the run that receives the ``comparison/`` artifacts (see the module docstring
    for the default); ``log_artifacts=False`` only writes the files. ``paired``: add the paired
    report of exactly two runs (run A is the first); runs scored on different test rows are then
    refused in one line before anything is written or logged.
    """
    client = _client(tracking_uri)
    runs = get_runs(client, list(run_ids))
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise FidBenchError(f"--out {out}: the comparison figure is a PNG, name it *.png")
    if paired is not None and len(runs) != 2:
        raise FidBenchError(f"the paired report compares exactly two runs, got {len(runs)}")
    if log_to_run_id is not None:
        # fail before any work when the target is unknown; a prefix becomes the full id
        log_to_run_id = get_run(client, log_to_run_id).info.run_id

    labels = [run_label(r) for r in runs]
    named = {label: held_out_scores(client, run) for label, run in zip(labels, runs, strict=True)}
    report = None
    if paired is not None:
        try:
            report = paired_report(
                (runs[0], runs[1]),
                (named[labels[0]], named[labels[1]]),
                (labels[0], labels[1]),
                n_boot=paired.n_boot,
                alpha=paired.alpha,
                seed=paired.seed,
            )
        except FidBenchError as err:
            raise FidBenchError(f"{err} (--no-paired draws their curves without the paired tests)") from None
    title = f"{len(runs)} run(s), test split"
    curves = overlay_curves_png(named, out, title=title)
    table = metric_table(runs, labels, [len(df) for df in named.values()])
    table_csv = out.with_suffix(".csv")
    table_md = out.with_suffix(".md")
    table.to_csv(table_csv, index=False)
    table_md.write_text(table_markdown(table))
    result = Comparison(out, table, table_csv, table_md, curves)
    if report is not None:
        result.paired = report
        result.paired_csv, result.paired_md = paired_paths(out)
        report.frame().to_csv(result.paired_csv, index=False)
        result.paired_md.write_text(report.markdown())

    if log_artifacts:
        target = log_to_run_id or _shared_parent(runs)
        created = target is None
        if created:
            target = _new_comparison_run(client, runs)
        status = "FAILED"
        try:
            for f in result.files:
                client.log_artifact(target, str(f), ARTIFACT_DIR)
            if created and report is not None:
                # a run of its own carries the key figures; a sweep's parent or a job keeps its own
                _log_figures(client, target, report)
            status = "FINISHED"
        finally:
            if created:  # a run this function opened is closed by it, whatever happened
                client.set_terminated(target, status)
        result.logged_to = target
        log.info("comparison logged to run %s under %s/", target, ARTIFACT_DIR)
    return result


def _log_figures(client: MlflowClient, run_id: str, report: PairedReport) -> None:
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in report.metrics().items()],
        params=[Param(k, v) for k, v in report.params().items()],
    )


def compare_children(
    parent_run_id: str,
    out_path: str | Path,
    *,
    metric: str = "roc_auc",
    top: int = 5,
    lower_is_better: bool | None = None,
    tracking_uri: str | None = None,
) -> Comparison | None:
    """Compare the ``top`` best finished children of a multirun's parent run and log it to that parent.

    The ranking is the leaderboard's (``--parent``); ``lower_is_better`` defaults to the metric's direction
    in the registry (losses ascend). Never raises a ``FidBenchError`` (a sweep's end must not fail over a figure):
    returns None, with a log line, when there is nothing to compare or the comparison fails.
    """
    client = _client(tracking_uri)
    ascending = metric_registry.lower_is_better(metric) if lower_is_better is None else lower_is_better
    try:
        boards = leaderboard(client, Query(metric=metric, top=0, parent=parent_run_id, ascending=ascending))
    except FidBenchError as err:
        log.info("no comparison for parent run %s: %s", parent_run_id, err)
        return None
    # a sweep over data sets spans experiments (one board each): rank all children together
    scored = [
        (metrics[metric], run_id)
        for board in boards
        for run_id, metrics in zip(board.runs["run_id"], board.runs["metrics"], strict=True)
        if not math.isnan(metrics.get(metric, math.nan))
    ]
    sign = 1.0 if ascending else -1.0
    ids = [run_id for _, run_id in sorted(scored, key=lambda p: (sign * p[0], p[1]))[:top]]
    if not ids:
        log.info("no comparison for parent run %s: no finished child logged %s", parent_run_id, metric)
        return None
    try:
        return compare_runs(ids, out_path, parent_run_id, tracking_uri=client.tracking_uri)
    except FidBenchError as err:  # e.g. a child without predictions.csv: the sweep itself is fine
        log.warning("no comparison for parent run %s: %s", parent_run_id, err)
        return None
