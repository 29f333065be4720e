"""Leave-one-source-out: per-source held-out metrics, their summary, the per-source table and bar plot.

Each source of ``data=multi`` is held out in turn; the detector is trained on the others and tested
on every row of it. Metrics are logged as ``loso/<source>/<metric>`` (the per-prefix metrics plus
the ROC-AUC's bootstrap interval) and summarised as ``loso/mean_roc_auc`` and ``loso/worst_roc_auc``
(registered: higher is better; the worst source is what a detector meeting the next generator risks).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fid_bench import markdown
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.generalisation import prefixed
from fid_bench.evaluation.held_out import HeldOutSettings, fold_metrics

if TYPE_CHECKING:
    from fid_bench.contract import Detector, Job
    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

PREFIX = "loso"
#: columns of the per-source table, in order
COLUMNS = [
    "source",
    "n",
    "n_real",
    "n_fake",
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "average_precision",
    "f1",
    "balanced_accuracy",
    "threshold",
]


def source_metrics(source: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """One held-out source's fold metrics as logged: ``loso/<source>/...`` with the ROC-AUC interval."""
    out = prefixed(f"{PREFIX}/{source}", dict(metrics))
    for key in ("roc_auc_ci_low", "roc_auc_ci_high"):
        if key in metrics:
            out[f"{PREFIX}/{source}/{key}"] = float(metrics[key])
    return out


def summary(per_source: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``loso/mean_roc_auc`` and ``loso/worst_roc_auc`` over the held-out sources (NaN ROC-AUCs ignored)."""
    aucs = [float(m.get("roc_auc", math.nan)) for m in per_source.values()]
    finite = [a for a in aucs if not math.isnan(a)]
    return {
        f"{PREFIX}/mean_roc_auc": float(np.mean(finite)) if finite else math.nan,
        f"{PREFIX}/worst_roc_auc": float(min(finite)) if finite else math.nan,
        f"{PREFIX}/n_sources": float(len(aucs)),
    }


def source_table(
    per_source: Mapping[str, Mapping[str, float]], tests: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """One row per held-out source: size, ROC-AUC with its interval, and the metrics at the threshold
    chosen on the other sources' validation rows."""
    rows = []
    for source, m in per_source.items():
        labels = tests[source]["label"].to_numpy()
        row: dict[str, object] = {
            "source": source,
            "n": int(labels.size),
            "n_real": int((labels == 0).sum()),
            "n_fake": int((labels == 1).sum()),
        }
        row.update({c: float(m.get(c, math.nan)) for c in COLUMNS[4:]})
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def table_markdown(table: pd.DataFrame) -> str:
    """The per-source table as Markdown (ROC-AUC with its 95 % interval in one column)."""

    def num(v: float) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    header = ["held-out source", "n (real/fake)", "ROC-AUC [95% CI]", "AP", "F1", "bal. acc."]
    rows = [
        [
            r.source,
            f"{r.n} ({r.n_real}/{r.n_fake})",
            f"{num(r.roc_auc)} [{num(r.roc_auc_ci_low)}, {num(r.roc_auc_ci_high)}]",
            num(r.average_precision),
            num(r.f1),
            num(r.balanced_accuracy),
        ]
        for r in table.itertuples()
    ]
    return markdown.table(header, rows, [False, True, True, True, True, True])


def bar_plot(table: pd.DataFrame, path: str | Path, title: str = "Held-out ROC-AUC per source") -> Path:
    """Bars of each held-out source's ROC-AUC with its bootstrap interval, and the chance line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.2 * len(table) + 2), 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    auc = table["roc_auc"].to_numpy(dtype=float)
    low = np.nan_to_num(auc - table["roc_auc_ci_low"].to_numpy(dtype=float), nan=0.0)
    high = np.nan_to_num(table["roc_auc_ci_high"].to_numpy(dtype=float) - auc, nan=0.0)
    ax.bar(x, np.nan_to_num(auc, nan=0.0), yerr=[low, high], capsize=4, color="tab:blue")
    ax.axhline(0.5, color="grey", linestyle="--", label="chance")
    for xi, a in zip(x, auc, strict=True):
        ax.annotate("–" if math.isnan(a) else f"{a:.3f}", (xi, 0.02), ha="center", color="white", fontsize=8)
    ax.set_xticks(x, table["source"].tolist(), rotation=20)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("ROC-AUC (held out)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


#: the files ``run_source_folds`` writes under ``<output_dir>/loso`` in a final run, in order
FILES = ("per_source.csv", "per_source.md", "roc_auc_per_source.png", "scores.csv")


def run_source_folds(
    detector: Detector, job: Job, source_folds: list[Fold], settings: HeldOutSettings, *, final: bool
) -> tuple[dict[str, float], list[Path]]:
    """Train without each source and test on it: ``loso/<source>/*``, ``loso/mean_roc_auc``,
    ``loso/worst_roc_auc``, and the files to log under ``loso`` (a final run writes the per-source
    table, its bar plot and every held-out score under ``<output_dir>/loso``; a search trial none)."""
    if not getattr(detector, "supports_source_folds", True):
        raise FidBenchError(
            f"cv.leave_one_source_out is not supported by classifier={detector.name}; "
            "use the embedding track (e.g. classifier=logreg with a frozen model)"
        )
    per_source: dict[str, dict[str, float]] = {}
    tests: dict[str, pd.DataFrame] = {}
    out: dict[str, float] = {}
    # one model per held-out source: a bar on a terminal
    shown = source_folds
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        shown = tqdm(source_folds, desc="sources", unit="source")
    for fold in shown:
        fold_scores = detector.fit_predict(job, fold)
        m = fold_metrics(fold_scores, settings, final=final)
        per_source[fold.name] = m
        tests[fold.name] = fold_scores[fold_scores["split"] == "test"]
        out.update(source_metrics(fold.name, m))
        log.info("leave-one-source-out: %s held out, roc_auc=%.4f", fold.name, m.get("roc_auc", float("nan")))
    out.update(summary(per_source))
    if not final:
        return out, []
    work = job.output_dir / PREFIX
    work.mkdir(parents=True, exist_ok=True)
    table = source_table(per_source, tests)
    table.to_csv(work / "per_source.csv", index=False)
    (work / "per_source.md").write_text(table_markdown(table) + "\n")
    bar_plot(table, work / "roc_auc_per_source.png")
    # every held-out row's score: two runs on the same sources can be compared pair-wise
    pd.concat([t.assign(source=name) for name, t in tests.items()], ignore_index=True).to_csv(
        work / "scores.csv", index=False
    )
    return out, [work / name for name in FILES]
