"""The audit's findings as one object, and their rendering: metrics, Markdown, JSON, artifacts.

Owns ``AuditReport`` (every table the checks produced, the warnings and the settings) with its
summaries (``duplicate_summary``, ``distributions``, ``metrics`` for MLflow) and its output
(``to_markdown``, ``to_dict``, ``write``). Nothing here reads files or decides what is wrong.

May import: ``fid_bench.data``, ``fid_bench.audit.duplicates``, ``fid_bench.audit.headers``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.audit.duplicates import dup_summary
from fid_bench.audit.headers import CATEGORICAL, NUMERIC
from fid_bench.data.samples import LABEL_NAMES

SPLIT_ORDER = ("train", "test", "predict")


@dataclass
class AuditReport:
    """Everything the audit found; ``metrics()`` for MLflow, ``to_markdown()`` for the artifact."""

    name: str
    n_rows: int
    #: rows per split (index) and class (columns real / fake / unknown / total)
    counts: pd.DataFrame
    #: rows skipped by the reader or unreadable here: id, path, split, reason
    unreadable: pd.DataFrame
    #: within one split and class, one row per hash with copies: split, label, sha1, n, ids, paths
    duplicates: pd.DataFrame
    #: one row per hash labelled both real and generated: sha1, n_real, n_fake, splits, ids, paths
    label_conflicts: pd.DataFrame
    #: one row per test/predict row byte-identical to a train row: id, path, split, label, sha1, train_ids
    leaks: pd.DataFrame
    #: per row: id, split, label, sha1 and the header attributes (``CATEGORICAL`` + ``NUMERIC``)
    attributes: pd.DataFrame
    #: one row per attribute: attribute, kind, auc, n, warn
    shortcuts: pd.DataFrame
    shortcut_auc: float
    #: near-duplicate groups (None when not checked): group, n_files, n_rows, labels, splits, sha1s, paths
    near_duplicates: pd.DataFrame | None = None
    near_dup_threshold: int | None = None
    near_dup_leak_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    # -- summaries

    def duplicate_summary(self) -> pd.DataFrame:
        """Per split and class: rows, unique hashes and extra copies (rows - unique hashes)."""
        g = dup_summary(self.attributes).rename(columns={"cls": "class"})
        cols = ["split", "class", "rows", "unique", "extra"]
        return g[cols].sort_values(["split", "class"], ignore_index=True)

    def extra_duplicates(self, split: str, label: int) -> int:
        s = self.duplicate_summary()
        hit = s[(s["split"] == split) & (s["class"] == LABEL_NAMES[label])]
        return int(hit["extra"].sum())

    def distributions(self, top: int = 10) -> dict[str, pd.DataFrame]:
        """Per attribute, per class: value counts (categorical, ``top`` values) or quantiles (numeric)."""
        a = self.attributes[(self.attributes["label"].isin((0, 1))) & (self.attributes["error"] == "")]
        out: dict[str, pd.DataFrame] = {}
        cls = a["label"].map(LABEL_NAMES)
        for attr in CATEGORICAL:
            tab = pd.crosstab(a[attr].astype(str).replace("", "-"), cls)
            tab = tab.reindex(columns=["real", "fake"], fill_value=0)
            tab = tab.loc[tab.sum(axis=1).sort_values(ascending=False, kind="stable").index]
            if len(tab) > top:
                rest = tab.iloc[top:].sum().rename("(other)")
                tab = pd.concat([tab.iloc[:top], rest.to_frame().T])
            out[attr] = tab
        for attr in NUMERIC:
            vals = pd.to_numeric(a[attr], errors="coerce")
            desc = vals.groupby(cls).describe()
            out[attr] = desc.reindex(["real", "fake"]).dropna(how="all")
        return out

    def metrics(self) -> dict[str, float]:
        """A few numbers worth a metric each (unprefixed: log them as e.g. ``audit/<name>``); no NaN."""
        c = self.counts
        m: dict[str, float] = {
            "n_rows": self.n_rows,
            "n_real": float(c.loc["total", "real"]) if "total" in c.index else 0.0,
            "n_fake": float(c.loc["total", "fake"]) if "total" in c.index else 0.0,
            "n_unreadable": len(self.unreadable),
            "dup_extra": float((self.duplicates["n"] - 1).sum()) if len(self.duplicates) else 0.0,
            "label_conflict_groups": len(self.label_conflicts),
            "label_conflict_rows": float(
                (self.label_conflicts["n_real"] + self.label_conflicts["n_fake"]).sum()
            )
            if len(self.label_conflicts)
            else 0.0,
            "leak_test_rows": int((self.leaks["split"] == "test").sum()),
            "leak_predict_rows": int((self.leaks["split"] == "predict").sum()),
            "n_warnings": len(self.warnings),
            "elapsed_s": self.elapsed_s,
        }
        for split in SPLIT_ORDER:
            m[f"n_{split}"] = float(c.loc[split, "total"]) if split in c.index else 0.0
        aucs = self.shortcuts.dropna(subset=["auc"])
        for row in aucs.itertuples():
            m[f"shortcut_auc_{row.attribute}"] = float(row.auc)
        if len(aucs):
            m["max_shortcut_auc"] = float(aucs["auc"].max())
        if self.near_duplicates is not None:
            nd = self.near_duplicates
            m["near_dup_groups"] = len(nd)
            m["near_dup_extra"] = float((nd["n_files"] - 1).sum()) if len(nd) else 0.0
            m["near_dup_cross_class_groups"] = int(nd["labels"].map(lambda s: {0, 1} <= set(s)).sum())
            m["near_dup_leak_test_rows"] = self.near_dup_leak_rows
        return {k: float(v) for k, v in m.items() if not (isinstance(v, float) and math.isnan(v))}

    # -- output

    def to_markdown(self, max_examples: int = 10) -> str:
        lines = [f"# Data audit: {self.name}", ""]
        lines.append(f"{self.n_rows} rows, audited in {self.elapsed_s:.1f} s.")
        lines += ["", "## Warnings", ""]
        lines += [f"- {w}" for w in self.warnings] or ["None."]
        lines += ["", "## Counts", "", _md_table(self.counts.reset_index())]
        lines += ["", "## Skipped or unreadable rows", ""]
        if len(self.unreadable):
            reasons = self.unreadable.groupby("reason").size().rename("rows").reset_index()
            lines += [_md_table(reasons), "", "Examples:", ""]
            lines += _md_list(self.unreadable.head(max_examples), ["split", "path", "reason"])
        else:
            lines.append("None.")
        lines += ["", "## Exact duplicates (content hash)", ""]
        lines += ["Extra copies per split and class (rows minus unique hashes):", ""]
        lines.append(_md_table(self.duplicate_summary()))
        if len(self.duplicates):
            lines += ["", f"Largest of {len(self.duplicates)} duplicate groups:", ""]
            top = self.duplicates.sort_values("n", ascending=False, kind="stable").head(max_examples)
            for r in top.itertuples():
                lines.append(f"- {r.split}/{LABEL_NAMES[r.label]} x{r.n}: {_paths(r.paths)}")
        lines += ["", "### Label conflicts (same bytes labelled real and generated)", ""]
        if len(self.label_conflicts):
            lines.append(f"{len(self.label_conflicts)} hashes:")
            lines.append("")
            for r in self.label_conflicts.head(max_examples).itertuples():
                lines.append(f"- {r.n_real} real / {r.n_fake} fake: {_paths(r.paths)}")
        else:
            lines.append("None.")
        lines += ["", "### Leaks (test or predict rows byte-identical to a train row)", ""]
        if len(self.leaks):
            per = self.leaks.groupby(["split", "label"]).size().rename("rows").reset_index()
            per["class"] = per["label"].map(LABEL_NAMES)
            lines += [_md_table(per[["split", "class", "rows"]]), "", "Examples:", ""]
            for r in self.leaks.head(max_examples).itertuples():
                lines.append(f"- {r.split} `{r.path}` = train `{r.train_paths[0]}`")
        else:
            lines.append("None.")
        if self.near_duplicates is not None:
            nd = self.near_duplicates
            lines += [
                "",
                f"## Near-duplicates (perceptual hash, Hamming distance <= {self.near_dup_threshold})",
                "",
            ]
            lines.append(
                f"{len(nd)} groups of distinct files; {self.near_dup_leak_rows} test rows have a near-duplicate "
                "in train."
            )
            for r in (
                nd.sort_values("n_files", ascending=False, kind="stable").head(max_examples).itertuples()
            ):
                labels = "/".join(LABEL_NAMES[v] for v in sorted(set(r.labels)))
                lines.append(
                    f"- {r.n_files} files ({labels}; {', '.join(sorted(set(r.splits)))}): {_paths(r.paths)}"
                )
        lines += ["", "## Attributes and shortcuts", ""]
        lines += [
            f"Single-feature ROC-AUC of each attribute against the label (warning at >= {self.shortcut_auc:g}; "
            "numeric: max(auc, 1 - auc); categorical: out-of-fold generated-rate of the category):",
            "",
            _md_table(self.shortcuts),
        ]
        for attr, tab in self.distributions().items():
            lines += ["", f"### {attr}", "", _md_table(tab.reset_index().rename(columns={"index": attr}))]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with every group (not only the examples the markdown shows)."""

        def records(df: pd.DataFrame | None) -> list[dict] | None:
            return None if df is None else json.loads(df.to_json(orient="records"))

        return {
            "name": self.name,
            "n_rows": self.n_rows,
            "elapsed_s": self.elapsed_s,
            "warnings": self.warnings,
            "metrics": self.metrics(),
            "counts": json.loads(self.counts.to_json(orient="index")),
            "unreadable": records(self.unreadable),
            "duplicate_summary": records(self.duplicate_summary()),
            "duplicates": records(self.duplicates),
            "label_conflicts": records(self.label_conflicts),
            "leaks": records(self.leaks),
            "near_dup_threshold": self.near_dup_threshold,
            "near_duplicates": records(self.near_duplicates),
            "shortcut_auc": self.shortcut_auc,
            "shortcuts": records(self.shortcuts),
            "distributions": {
                k: json.loads(v.to_json(orient="index")) for k, v in self.distributions().items()
            },
        }

    def write(self, out_dir: Path) -> list[Path]:
        """Write ``audit.md`` and ``audit.json`` into ``out_dir`` (for logging as artifacts)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / "audit.md", out_dir / "audit.json"
        md.write_text(self.to_markdown())
        js.write_text(json.dumps(self.to_dict(), indent=1))
        return [md, js]


def _md_cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _md_list(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return ["- " + " ".join(f"`{getattr(r, c)}`" for c in cols) for r in df.itertuples()]


def _paths(paths: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(f"`{p}`" for p in list(paths)[:n])
    return shown + (f" (+{len(paths) - n} more)" if len(paths) > n else "")
