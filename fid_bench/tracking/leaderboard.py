"""Rank tracked runs: the library behind ``fid-bench leaderboard`` and the table printed after a multirun.

Runs are read from the tracking store (local SQLite/file store or a server), parent runs are left
out, runs are filtered by status and tags, sorted by one logged metric and shown with the columns
that identify a job. Cross-validated metrics (``<m>`` with ``<m>_std``) show as "mean ± std".

``add_top_marks`` adds the ``~top`` column: the shown runs not significantly different in ROC-AUC
from the top one on the same test rows (``fid_bench.tracking.paired_runs.marks_against_top``: DeLong,
Holm-adjusted), with a footer naming the test; it reads the shown runs' ``predictions.csv``.

Every board shows each run's test-row count (``n_test``). A run scored on fewer test rows than the
reference set -- the most complete set among the ranked runs on the same data (data fingerprint,
hold-out and cross-validated runs apart), or the rows an import says it missed -- is *partial*:
marked in that column, ranked after the complete runs and so never ``top`` over them (a
cherry-picked subset of easy images would otherwise lead the board).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from fid_bench import markdown
from fid_bench.errors import FidBenchError
from fid_bench.evaluation import metric_registry
from fid_bench.tracking.kinds import KIND_TAG, SUMMARY_KINDS, UNRANKED_KINDS
from fid_bench.tracking.paired_runs import TopMarks, marks_against_top
from fid_bench.tracking.run_queries import LeaderboardError, fetch_runs, get_run

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
GROUP_COLUMNS = ["model", "classifier", "balance", "data"]
KEY_METRICS = list(metric_registry.headline())
FORMATS = ("table", "markdown", "csv")
STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED", "ALL")
MISSING = "-"


@dataclass
class Query:
    """What to rank; mirrors the command-line options."""

    experiment: str | None = None
    metric: str = "roc_auc"
    top: int = 10
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    status: str = "FINISHED"
    parent: str | None = None
    ascending: bool | None = None  # None: the metric's direction in the registry (losses ascend)

    def is_ascending(self) -> bool:
        """Smallest first? An explicit ``ascending`` wins over the metric metric_registry."""
        return metric_registry.lower_is_better(self.metric) if self.ascending is None else self.ascending


@dataclass
class Board:
    """The ranked runs of one experiment."""

    experiment: str
    metric: str
    runs: pd.DataFrame  # one row per run, best first (see ``runs_frame``)
    total: int  # runs that passed the filters, before ``top``
    marks: TopMarks | None = None  # the ``~top`` column, when ``add_top_marks`` found predictions


# --------------------------------------------------------------------------- reading the store


def runs_frame(runs: Sequence[Run], experiment_names: Mapping[str, str]) -> pd.DataFrame:
    """One row per run: ids, status, duration, the identifying tags, and dicts of tags/params/metrics."""
    now = time.time()
    rows = []
    for run in runs:
        info, data = run.info, run.data
        start = info.start_time / 1000 if info.start_time else math.nan
        end = info.end_time / 1000 if info.end_time else (now if info.status == "RUNNING" else math.nan)
        rows.append(
            {
                "experiment": experiment_names.get(info.experiment_id, info.experiment_id),
                "run_id": info.run_id,
                "run_name": info.run_name or "",
                "status": info.status,
                "duration_s": end - start,
                **{g: data.tags.get(g, "") for g in GROUP_COLUMNS},
                "tags": dict(data.tags),
                "params": dict(data.params),
                "metrics": dict(data.metrics),
            }
        )
    columns = [
        "experiment",
        "run_id",
        "run_name",
        "status",
        "duration_s",
        *GROUP_COLUMNS,
        "tags",
        "params",
        "metrics",
    ]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- ranking


def _ranked_runs(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    """The runs a board ranks: jobs, ensembles and imported runs; under ``--parent`` also its children
    of any kind (e.g. trials)."""
    skip = SUMMARY_KINDS if query.parent else UNRANKED_KINDS
    return frame[frame["tags"].map(lambda t: t.get(KIND_TAG) not in skip)]


def _matches(row: pd.Series, filters: Mapping[str, Sequence[str]]) -> bool:
    for key, allowed in filters.items():
        if key.startswith("params."):
            value = row["params"].get(key[len("params.") :])
        else:
            value = row["tags"].get(key[len("tags.") :] if key.startswith("tags.") else key)
        if value is None or value not in allowed:
            return False
    return True


def _describe(query: Query) -> str:
    parts = [] if query.status == "ALL" else [query.status]
    parts += [f"{k}={','.join(v)}" for k, v in query.filters.items()]
    if query.parent:
        parts.append(f"parent={query.parent}")
    return " ".join(parts) if parts else "matching"


#: metric an imported run logs for the test rows its file did not score
IMPORT_MISSING_TEST = "import/n_missing_test"


def _data_key(row: pd.Series) -> tuple[str, bool]:
    """Runs whose test-row counts compare: the same data, and both hold-out or both cross-validated."""
    tags, metrics = row["tags"], row["metrics"]
    data = tags.get("data_fingerprint") or tags.get("data_name") or tags.get("data") or ""
    return data, float(metrics.get("n_folds", 1.0) or 1.0) > 1.0


def completeness(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``n_test`` (the run's test rows), ``n_test_reference`` (the most complete count
    among runs on the same data, or the rows an import was aligned with) and ``partial``."""
    n_test = frame["metrics"].map(lambda m: float(m.get("n_test", math.nan))).astype(float)
    missing = frame["metrics"].map(lambda m: float(m.get(IMPORT_MISSING_TEST, 0.0) or 0.0)).astype(float)
    own = n_test + missing.fillna(0.0)
    keys = frame.apply(_data_key, axis=1) if len(frame) else pd.Series([], dtype=object)
    reference = own.groupby(keys.map(str)).transform("max") if len(frame) else own
    partial = n_test.notna() & (n_test < reference)
    return frame.assign(n_test=n_test, n_test_reference=reference, partial=partial.astype(bool))


def rank(frame: pd.DataFrame, query: Query, experiment: str, *, strict: bool) -> Board | None:
    """Filter and sort one experiment's runs. ``strict`` raises instead of returning None."""
    jobs = _ranked_runs(frame, query)
    if jobs.empty:
        if strict:
            what = (
                f"run {query.parent} has no child runs"
                if query.parent
                else f"experiment {experiment!r} has no runs"
            )
            raise LeaderboardError(what)
        return None
    logged = set().union(*jobs["metrics"].map(set))
    # runs that did not finish may never log the metric: listing them needs no metric (e.g. FAILED)
    finished = jobs[jobs["status"] == "FINISHED"]
    if query.metric not in logged and (query.status == "FINISHED" or not finished.empty):
        if strict:
            shown = sorted(m for m in logged if not m.endswith("_std"))
            listing = ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "") if shown else "none"
            raise LeaderboardError(
                f"metric {query.metric!r} was never logged in experiment {experiment!r} (logged: {listing})"
            )
        return None
    keep = jobs if query.status == "ALL" else jobs[jobs["status"] == query.status]
    if query.filters and not keep.empty:
        keep = keep[keep.apply(_matches, axis=1, filters=query.filters).astype(bool)]
    if keep.empty:
        if strict:
            raise LeaderboardError(f"no {_describe(query)} runs in experiment {experiment!r}")
        return None
    keep = completeness(keep)
    values = keep["metrics"].map(lambda m: m.get(query.metric, math.nan)).astype(float)
    # NaN (failed or incomplete runs) last whatever the direction, partial runs after complete ones;
    # run id breaks ties stably
    order = (
        keep.assign(_value=values, _missing=values.isna())
        .sort_values(
            ["_missing", "partial", "_value", "run_id"],
            ascending=[True, True, query.is_ascending(), True],
            kind="mergesort",
        )
        .drop(columns=["_value", "_missing"])
    )
    top = order if query.top <= 0 else order.head(query.top)
    return Board(
        experiment=experiment, metric=query.metric, runs=top.reset_index(drop=True), total=len(order)
    )


def leaderboard(client: MlflowClient, query: Query) -> list[Board]:
    """Boards for ``query``: one experiment, or every experiment that has matching runs."""

    experiments = sorted(client.search_experiments(), key=lambda e: e.name)
    names = {e.experiment_id: e.name for e in experiments}
    if query.experiment is not None:
        chosen = [e for e in experiments if e.name == query.experiment]
        if not chosen:
            known = ", ".join(sorted(names.values())) or "none"
            raise LeaderboardError(f"unknown experiment {query.experiment!r} (known: {known})")
    else:
        chosen = experiments
    filter_string = ""
    if query.parent is not None:
        try:
            parent_id = get_run(client, query.parent).info.run_id
        except FidBenchError as err:
            raise LeaderboardError(str(err).replace("unknown run", "unknown parent run", 1)) from None
        filter_string = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    if not chosen:
        raise LeaderboardError("the tracking store has no experiments")
    frame = runs_frame(fetch_runs(client, [e.experiment_id for e in chosen], filter_string), names)
    if query.experiment is not None:
        return [rank(frame, query, query.experiment, strict=True)]
    if query.parent is not None and frame.empty:
        raise LeaderboardError(f"run {query.parent} has no child runs")
    boards = []
    for experiment in chosen:
        sub = frame[frame["experiment"] == experiment.name]
        board = rank(sub, query, experiment.name, strict=False)
        if board is not None:
            boards.append(board)
    if not boards:
        jobs = _ranked_runs(frame, query)
        if jobs.empty:
            raise LeaderboardError("the tracking store has no runs")
        if not any(query.metric in m for m in jobs["metrics"]):
            raise LeaderboardError(f"metric {query.metric!r} was never logged in any experiment")
        raise LeaderboardError(f"no {_describe(query)} runs in any experiment")
    return boards


def add_top_marks(client: MlflowClient, boards: Sequence[Board], alpha: float = 0.05) -> None:
    """Mark, on each board, the shown runs tied in ROC-AUC with its top run (``Board.marks``).

    Reads ``predictions.csv`` of the shown rows only (after ``top``); a board none of whose runs
    logged predictions gets no column.
    """
    for board in boards:
        board.marks = marks_against_top(client, list(board.runs["run_id"]), alpha, metric=board.metric)


# --------------------------------------------------------------------------- rendering


# prefixes of per-group metrics: in-distribution subsets, too many to show as columns
IN_DISTRIBUTION_PREFIXES = ("group/", "audit/")


def metric_columns(board: Board) -> list[str]:
    """The sort metric, the key metrics that were logged, the threshold, then the honest-evaluation
    columns where logged: the ROC-AUC interval (``roc_auc_ci``), the ROC-AUC of each extra data set,
    perturbation and held-out group (``shoes/roc_auc``, ``jpeg75/roc_auc``, ``logo/<g>/roc_auc``),
    the audit's warning count and the extraction's images per second."""
    logged = set().union(*board.runs["metrics"].map(set)) if len(board.runs) else set()
    wanted = [board.metric] + [m for m in KEY_METRICS if m != board.metric] + ["threshold"]
    columns = [m for m in dict.fromkeys(wanted) if m == board.metric or m in logged]
    if {"roc_auc_ci_low", "roc_auc_ci_high"} <= logged:
        columns.insert(columns.index("roc_auc") + 1 if "roc_auc" in columns else len(columns), CI_COLUMN)
    columns += sorted(
        m for m in logged if m.endswith("/roc_auc") and not m.startswith(IN_DISTRIBUTION_PREFIXES)
    )
    if "audit/n_warnings" in logged:
        columns.append("audit/n_warnings")
    if THROUGHPUT_COLUMN in logged:  # what the features cost: read a frontier off the board
        columns.append(THROUGHPUT_COLUMN)
    return columns


CI_COLUMN = "roc_auc 95% CI"
#: feature extraction's throughput (0 when every image was cached), logged by every embedding run
THROUGHPUT_COLUMN = "extract/images_per_s"
MARK_COLUMN = "~top"
ROWS_COLUMN = "test rows"
#: how a partial run's test-row count reads: "33 < 40"
PARTIAL_SIGN = "<"


def rows_text(run: Any) -> str:
    """A run's test-row count, and the reference count when it is partial (``33 < 40``)."""
    n, ref = getattr(run, "n_test", math.nan), getattr(run, "n_test_reference", math.nan)
    if n is None or math.isnan(n):
        return MISSING
    return f"{int(n)} {PARTIAL_SIGN} {int(ref)}" if getattr(run, "partial", False) else str(int(n))


def partial_footer(board: Board) -> str | None:
    """One line explaining the partial mark, when the board shows a partial run."""
    if "partial" not in board.runs.columns or not board.runs["partial"].any():
        return None
    n = int(board.runs["partial"].sum())
    return (
        f"{ROWS_COLUMN} 'n {PARTIAL_SIGN} N': {n} run(s) scored on fewer test rows than the most complete "
        "run on the same data (or than the rows an import was aligned with); ranked after the complete "
        "runs, never top"
    )


def _mark_position(columns: list[str]) -> int:
    """The ``~top`` column sits right after the ROC-AUC it is about (and its interval)."""
    for name in (CI_COLUMN, "roc_auc"):
        if name in columns:
            return columns.index(name) + 1
    return 1


def _number(value: float) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.4f}"


def _metric_text(metrics: Mapping[str, float], name: str) -> str:
    if name == CI_COLUMN:
        low, high = metrics.get("roc_auc_ci_low"), metrics.get("roc_auc_ci_high")
        return MISSING if low is None or high is None else f"[{_number(low)}, {_number(high)}]"
    if name == "audit/n_warnings" and name in metrics:
        return str(int(metrics[name]))
    value = metrics.get(name)
    if value is None:
        return MISSING
    std = metrics.get(f"{name}_std")
    if std is None or math.isnan(std):
        return _number(value)
    return f"{_number(value)} ± {_number(std)}"


def format_duration(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return MISSING
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def display_rows(board: Board, show_status: bool) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, text cells and which columns are numeric (right-aligned)."""
    metrics = metric_columns(board)
    shown: list[str] = list(metrics)
    if board.marks is not None:
        shown.insert(_mark_position(shown), MARK_COLUMN)
    header = ["#", "run", *GROUP_COLUMNS, *shown, ROWS_COLUMN, "duration"] + (
        ["status"] if show_status else []
    )
    numeric = [True, False, *[False] * len(GROUP_COLUMNS), *[m != MARK_COLUMN for m in shown], True, True] + (
        [False] if show_status else []
    )
    rows = []
    for i, run in enumerate(board.runs.itertuples(index=False), start=1):
        cells = [str(i), run.run_id[:8], *[getattr(run, g) or MISSING for g in GROUP_COLUMNS]]
        cells += [
            board.marks.table.at[run.run_id, "mark"]
            if m == MARK_COLUMN and board.marks
            else _metric_text(run.metrics, m)
            for m in shown
        ]
        cells.append(rows_text(run))
        cells.append(format_duration(run.duration_s))
        if show_status:
            cells.append(run.status)
        rows.append(cells)
    return header, rows, numeric


def render_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def csv_frame(boards: Sequence[Board]) -> pd.DataFrame:
    """Machine-readable leaderboard: full ids, raw numbers, ``<m>_std`` as its own column."""
    records = []
    for board in boards:
        metrics = metric_columns(board)
        for i, run in enumerate(board.runs.itertuples(index=False), start=1):
            record: dict[str, Any] = {
                "experiment": board.experiment,
                "rank": i,
                "run_id": run.run_id,
                "run_name": run.run_name,
                **{g: getattr(run, g) for g in GROUP_COLUMNS},
                "status": run.status,
                "duration_s": round(run.duration_s, 3) if not math.isnan(run.duration_s) else None,
                "n_test": _count(getattr(run, "n_test", math.nan)),
                "n_test_reference": _count(getattr(run, "n_test_reference", math.nan)),
                "partial": bool(getattr(run, "partial", False)),
            }
            for m in metrics:
                if m == CI_COLUMN:
                    record["roc_auc_ci_low"] = run.metrics.get("roc_auc_ci_low")
                    record["roc_auc_ci_high"] = run.metrics.get("roc_auc_ci_high")
                    continue
                record[m] = run.metrics.get(m)
                if f"{m}_std" in run.metrics:
                    record[f"{m}_std"] = run.metrics[f"{m}_std"]
            if board.marks is not None:
                record.update(_mark_record(board.marks, run.run_id))
            records.append(record)
    return pd.DataFrame.from_records(records)


def _count(value: float) -> int | None:
    return None if value is None or math.isnan(value) else int(value)


def _mark_record(marks: TopMarks, run_id: str) -> dict[str, Any]:
    """The ``~top`` test of one run for the CSV: tied or not (empty when not comparable), the DeLong
    difference to the top run, raw and Holm-adjusted p-values, alpha, and why not comparable."""
    row = marks.table.loc[run_id]

    def number(name: str) -> float | None:
        value = row[name]
        return None if value is None or math.isnan(value) else float(value)

    return {
        "tied_with_top": row["tied_with_top"],
        "roc_auc_diff_to_top": number("diff_to_top"),
        "roc_auc_p_to_top": number("p_value"),
        "roc_auc_p_holm_to_top": number("p_adjusted"),
        "paired_alpha": marks.alpha,
        "paired_note": row["note"] or None,
    }


def render(
    boards: Sequence[Board], fmt: str = "table", *, headings: bool = True, show_status: bool = False
) -> str:
    """Text of the boards in ``fmt`` (table | markdown | csv)."""
    if fmt == "csv":
        return csv_frame(boards).to_csv(index=False).rstrip("\n")
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    parts = []
    for board in boards:
        header, rows, numeric = display_rows(board, show_status)
        shown = f"top {len(rows)} of {board.total}" if len(rows) < board.total else f"{board.total} runs"
        if fmt == "markdown":
            if headings:
                parts.append(f"### {markdown.cell(board.experiment)} ({shown}, by {board.metric})\n")
            parts.append(markdown.table(header, rows, numeric))
            notes = [n for n in (board.marks.footer() if board.marks else None, partial_footer(board)) if n]
            if notes:  # a blank line first: a text line right after a table joins it
                parts += ["", *notes]
        else:
            if headings:
                parts.append(f"experiment: {board.experiment} ({shown}, by {board.metric})")
            parts.append(render_table(header, rows, numeric))
            if board.marks is not None:
                parts.append(board.marks.footer())
            if partial_footer(board):
                parts.append(partial_footer(board))
        parts.append("")
    return "\n".join(parts).rstrip("\n")
