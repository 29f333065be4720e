"""Leave-one-source-out: per-source held-out metrics, their summary, the per-source table and bar plot.

Each source of ``data=multi`` is held out in turn; the detector is trained on the others and tested
on every row of it. Metrics are logged as ``loso/<source>/<metric>`` (the per-prefix metrics plus
the ROC-AUC's bootstrap interval) and summarised as ``loso/mean_roc_auc`` and ``loso/worst_roc_auc``
(registered: higher is better; the worst source is what a detector meeting the next generator risks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from fid_bench import markdown
from fid_bench.evaluation.generalisation import prefixed

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
