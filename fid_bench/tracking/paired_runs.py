"""Paired tests between logged runs scored on the same test rows (``fid_bench.evaluation.paired``).

* ``paired_report``: ``fid-bench compare A B``'s report: ROC-AUC by DeLong's test, F1 and accuracy
  (each run at its own validation threshold) and TPR at FPR 1 % / 5 % by the paired bootstrap, as a
  table (CSV and Markdown), one verdict line, and the key figures as MLflow metrics and params.
* ``marks_against_top``: the leaderboard's ``~top`` column: which shown runs are not significantly
  different in ROC-AUC from the top one on the same test rows (DeLong against the top run,
  Holm-adjusted: ``tied_with_top``); runs scored on other rows are marked not comparable.

Rows are matched by id (``pair_test_rows``), never by position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fid_bench import markdown
from fid_bench.errors import FidBenchError, one_line
from fid_bench.evaluation.paired import (
    CORRECTION,
    PairedResult,
    compare_scores,
    pair_test_rows,
    tied_with_top,
)
from fid_bench.tracking.run_queries import held_out_scores

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: prefix of the metrics and params a comparison run receives
PREFIX = "paired"
MINUS = "\u2212"


def p_text(p: float) -> str:
    """A p-value for reading: three decimals, ``< 0.001`` below that, a dash when undefined."""
    if p is None or math.isnan(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_relation(p: float) -> str:
    """``= 0.012`` or ``< 0.001``, for a sentence."""
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


def _num(v: float, sign: bool = False) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def ci_text(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "-"
    return f"[{low:.4f}, {high:.4f}]"


def decision_threshold(run: Run) -> float | None:
    """The threshold the run chose on its validation rows (its ``threshold`` metric); None if not logged."""
    value = run.data.metrics.get("threshold")
    return float(value) if value is not None and math.isfinite(value) else None


def require_hold_out(scores: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """``scores`` (a run's test rows), refused in one line when they come from several folds.

    A K-fold run tests every row once but with K models (and logs the mean of K thresholds and
    metrics); a leave-one-group-out run repeats rows. Neither is one detector scored on one test
    set, which is what the paired tests compare.
    """
    folds = scores["fold"].nunique() if "fold" in scores.columns else 1
    if folds > 1:
        raise FidBenchError(
            f"run {run_id[:8]} is cross-validated (its test rows come from {folds} folds, each scored "
            "by its own model); the paired tests compare hold-out runs"
        )
    return scores


# --------------------------------------------------------------------------- compare A B


@dataclass
class PairedReport:
    """Run A against run B on their shared test rows (``results``: A minus B, one per metric)."""

    run_ids: tuple[str, str]
    names: tuple[str, str]
    results: list[PairedResult]
    alpha: float
    n_boot: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def roc_auc(self) -> PairedResult:
        return next(r for r in self.results if r.metric == "roc_auc")

    @property
    def level(self) -> str:
        return f"{100 * (1 - self.alpha):g} %"

    def frame(self) -> pd.DataFrame:
        """One row per metric, raw numbers (``paired.csv``)."""
        rows = [{"run_a": self.run_ids[0], "run_b": self.run_ids[1], **r.as_dict()} for r in self.results]
        frame = pd.DataFrame(rows)
        frame["alpha"] = self.alpha
        return frame

    def verdict(self) -> str:
        """The ROC-AUC sentence, naming the test: who is better at ``alpha``, or neither."""
        r = self.roc_auc
        if r.p_value < self.alpha:
            winner = "A" if r.diff > 0 else "B"
            outcome = f"{winner} is better at alpha {self.alpha:g}"
        else:
            outcome = f"not significantly different at alpha {self.alpha:g}"
        return (
            f"ROC-AUC: A {MINUS} B = {_num(r.diff, sign=True)} {ci_text(r.ci_low, r.ci_high)} "
            f"({self.level} CI), DeLong p {_p_relation(r.p_value)}: {outcome}"
        )

    def heading(self) -> str:
        n = self.roc_auc.n
        boot = (
            f"; paired bootstrap: {self.n_boot} resamples, seed {self.seed}"
            if self.n_boot
            else "; no bootstrap (--bootstrap 0)"
        )
        return f"A = {self.names[0]}, B = {self.names[1]}: {n} test rows matched by id{boot}"

    def markdown(self) -> str:
        """Heading line, the table, the notes and the verdict (``paired.md``, and what compare prints)."""
        header = ["metric", "A", "B", f"A {MINUS} B", f"{self.level} CI", "p", "n", "method"]
        numeric = [False, True, True, True, False, True, True, False]
        rows = [
            [
                r.metric,
                _num(r.a),
                _num(r.b),
                _num(r.diff, sign=True),
                ci_text(r.ci_low, r.ci_high),
                p_text(r.p_value),
                str(r.n),
                r.method,
            ]
            for r in self.results
        ]
        parts = [self.heading(), "", markdown.table(header, rows, numeric), ""]
        parts += [*self.notes, "", self.verdict()] if self.notes else [self.verdict()]
        return "\n".join(parts) + "\n"

    def metrics(self) -> dict[str, float]:
        """Key figures for a comparison run: ``paired/<metric>_{a,b,diff,ci_low,ci_high,p}``."""
        out = {}
        for r in self.results:
            for key, value in (
                ("a", r.a),
                ("b", r.b),
                ("diff", r.diff),
                ("ci_low", r.ci_low),
                ("ci_high", r.ci_high),
                ("p", r.p_value),
            ):
                if not math.isnan(value):
                    out[f"{PREFIX}/{r.metric}_{key}"] = float(value)
        return out

    def params(self) -> dict[str, str]:
        return {
            f"{PREFIX}/run_a": self.run_ids[0],
            f"{PREFIX}/run_b": self.run_ids[1],
            f"{PREFIX}/n_rows": str(self.roc_auc.n),
            f"{PREFIX}/alpha": f"{self.alpha:g}",
            f"{PREFIX}/bootstrap": str(self.n_boot),
            f"{PREFIX}/seed": str(self.seed),
            f"{PREFIX}/verdict": self.verdict(),
        }


def paired_report(
    runs: tuple[Run, Run],
    scores: tuple[pd.DataFrame, pd.DataFrame],
    names: tuple[str, str],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedReport:
    """Run A (``runs[0]``) against run B on their shared test rows.

    Refuses, in one line, runs scored on different test rows and cross-validated ones
    (``require_hold_out``). ``n_boot=0`` runs DeLong's test only. A run without a logged threshold (not one fid_bench
    wrote) gets no F1/accuracy rows, with a note saying why.
    """
    ids = (runs[0].info.run_id, runs[1].info.run_id)
    a_rows, b_rows = (require_hold_out(frame, i) for frame, i in zip(scores, ids, strict=True))
    pairs = pair_test_rows(a_rows, b_rows, names=(ids[0][:8], ids[1][:8]))
    thresholds = (decision_threshold(runs[0]), decision_threshold(runs[1]))
    notes = []
    if n_boot and None in thresholds:
        lacking = " and ".join(
            f"{k} ({i[:8]})" for k, i, t in zip("AB", ids, thresholds, strict=True) if t is None
        )
        notes.append(f"F1 and accuracy not compared: run {lacking} logged no decision threshold.")
    results = compare_scores(pairs, *thresholds, n_boot=n_boot, alpha=alpha, seed=seed)
    return PairedReport(ids, names, results, alpha, n_boot, seed, notes)


# --------------------------------------------------------------------------- leaderboard marks

TOP, TIED, NOT_TIED, NOT_COMPARABLE = "top", "~", "", "n/a"


@dataclass
class TopMarks:
    """The leaderboard's ``~top`` column for one board.

    ``table``: one row per shown run (index ``run_id``), columns ``mark`` (``TOP``, ``TIED``,
    ``NOT_TIED`` or ``NOT_COMPARABLE``), ``roc_auc`` (on the shared rows), ``diff_to_top``,
    ``p_value``, ``p_adjusted`` (Holm), ``tied_with_top`` (None when not comparable) and ``note``
    (why a run is not comparable).
    """

    table: pd.DataFrame
    top_run: str | None
    n_compared: int
    n_rows: int
    alpha: float
    metric: str

    def footer(self) -> str:
        """One line naming the test, the correction, alpha and what was compared."""
        if self.top_run is None:
            reason = self.table["note"].iloc[0] if len(self.table) else "no runs"
            return f"~top: no run to test against ({reason})"
        runs = "1 run" if self.n_compared == 1 else f"{self.n_compared} runs"
        text = (
            f"~ : not significantly different from the top run in ROC-AUC (DeLong, {CORRECTION}-adjusted, "
            f"alpha {self.alpha:g}, {runs} on the same {self.n_rows} test rows)"
        )
        if self.metric != "roc_auc":
            text += f"; tested on ROC-AUC, not {self.metric}"
            if self.top_run != self.table.index[0]:
                text += f"; top = {self.top_run[:8]}, the highest ROC-AUC of them"
        if (self.table["mark"] == NOT_COMPARABLE).any():
            text += "; n/a : not scored on the top run's test rows, or no usable predictions.csv"
        return text


def marks_against_top(
    client: MlflowClient,
    run_ids: Sequence[str],
    alpha: float = 0.05,
    *,
    metric: str = "roc_auc",
) -> TopMarks | None:
    """Mark the runs (best first, as a board shows them) not significantly different in ROC-AUC
    from the top one, on the test rows of the first run with usable predictions.

    The runs scored on those rows (matched by id, same labels) are tested with ``tied_with_top``:
    the top run is the one with the highest ROC-AUC on them (the first row when the board ranks by
    roc_auc; ``metric`` only says what the board ranks by, for the footer). A run without
    ``predictions.csv``, cross-validated (``require_hold_out``) or scored on other rows is
    ``NOT_COMPARABLE``, with the reason in ``note``. Only the given runs' predictions are read.
    Returns None when none of them logged predictions (nothing to test: no column to show).
    """
    if not 0.0 < alpha < 1.0:
        raise FidBenchError(f"alpha must be in (0, 1), got {alpha}")
    notes: dict[str, str] = {}
    reference: pd.DataFrame | None = None
    ref_id = None
    scores: dict[str, np.ndarray] = {}
    y = None
    any_predictions = False
    for run_id in run_ids:
        try:
            frame = held_out_scores(client, client.get_run(run_id))
        except FidBenchError as err:
            notes[run_id] = one_line(err)
            continue
        any_predictions = True
        try:
            require_hold_out(frame, run_id)
            if reference is None:
                # pairing a run with itself checks that its test ids are unique
                pairs = pair_test_rows(frame, frame, names=(run_id[:8], run_id[:8]))
                reference, ref_id = frame, run_id
                y = pairs["label"].to_numpy(dtype=np.int64)
                scores[run_id] = pairs["score_a"].to_numpy(dtype=np.float64)
            else:
                pairs = pair_test_rows(reference, frame, names=(ref_id[:8], run_id[:8]))
                scores[run_id] = pairs["score_b"].to_numpy(dtype=np.float64)
        except FidBenchError as err:
            notes[run_id] = one_line(err)
    if not any_predictions:
        return None
    rows = {r: {"mark": NOT_COMPARABLE, "note": notes.get(r, "")} for r in run_ids}
    top = None
    if scores and y is not None:
        try:
            tested = tied_with_top(y, scores, alpha).set_index("run")
        except FidBenchError as err:  # e.g. one class only on the shared rows
            for r in scores:
                rows[r]["note"] = one_line(err)
            tested = None
        if tested is not None:
            top = str(tested.index[0])
            for r, t in tested.iterrows():
                tied = bool(t["tied_with_top"])
                rows[r] = {
                    "mark": TOP if r == top else (TIED if tied else NOT_TIED),
                    "roc_auc": float(t["roc_auc"]),
                    "diff_to_top": float(t["diff_to_top"]),
                    "p_value": float(t["p_value"]),
                    "p_adjusted": float(t["p_adjusted"]),
                    "tied_with_top": tied,
                    "note": "",
                }
    table = pd.DataFrame.from_dict(rows, orient="index")
    for col in ("roc_auc", "diff_to_top", "p_value", "p_adjusted"):
        if col not in table.columns:
            table[col] = math.nan
    if "tied_with_top" not in table.columns:
        table["tied_with_top"] = None
    table = table.astype({"tied_with_top": object})
    table.loc[table["mark"] == NOT_COMPARABLE, "tied_with_top"] = None
    table.index.name = "run_id"
    n_rows = 0 if y is None else int(y.size)
    return TopMarks(table, top, len(scores) if top else 0, n_rows, alpha, metric)
