"""Predictions made elsewhere (``id,score[,label]`` CSV) aligned with rows the harness reads.

A detector from another tool joins the leaderboard and the paired tests only if its scores are on
the same rows as our runs'. ``read_predictions_csv`` reads and checks the file; ``align_predictions``
matches it by id against a reference (the ``id``, ``label``, ``split`` rows a run of ours is scored
on) and says exactly what did not match:

* a file without ``id`` or ``score``, an empty or non-numeric score, a score outside [0, 1], an id
  given twice, or a ``label`` that disagrees with the data set's (the file then describes other
  images) -> one ``FidBenchError`` line with the count and an example;
* ids of the file the reference does not have -> counted in ``ImportReport.unknown`` and left out
  (a file may score more images than one split);
* reference rows the file does not score -> counted and listed in ``ImportReport.missing`` for the
  caller to report (``summary()``); ``missing="error"`` refuses instead. Never dropped without a word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fid_bench.data.csv_table import read_csv_table
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What matching a predictions file against the reference rows found."""

    n_file_rows: int
    n_matched: int
    missing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "split"]))
    unknown: list[str] = field(default_factory=list)
    #: reference rows per split (``val``, ``test``)
    n_reference: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Counts to log with the run."""
        out = {
            "import/n_file_rows": float(self.n_file_rows),
            "import/n_matched": float(self.n_matched),
            "import/n_unknown_ids": float(len(self.unknown)),
        }
        for split in ("val", "test"):
            out[f"import/n_missing_{split}"] = float((self.missing["split"] == split).sum())
        return out

    def summary(self) -> str:
        parts = [f"{self.n_matched} of {self.n_file_rows} file rows matched"]
        counts = self.missing["split"].value_counts()
        n_val = self.n_reference.get("val", 0)
        if n_val and int(counts.get("val", 0)) == n_val:
            # a file of test scores only is the usual case: say so instead of listing every val id as missing
            parts.append(f"no validation rows scored ({n_val} val ids in missing_ids.csv)")
            counts = counts.drop("val")
        if len(counts):
            parts.append(
                "missing from the file: " + ", ".join(f"{int(n)} {split}" for split, n in counts.items())
            )
        if self.unknown:
            parts.append(f"{len(self.unknown)} unknown id(s) ignored (e.g. {self.unknown[0]!r})")
        return "; ".join(parts)


def read_predictions_csv(path: str | Path) -> pd.DataFrame:
    """The file as ``id`` (str), ``score`` (float in [0, 1]) and, when present, ``label`` (0/1)."""
    frame = read_csv_table(path, (), dtype={"id": str}, keep_default_na=False, na_values=[""])
    missing = [c for c in ("id", "score") if c not in frame.columns]
    if missing:
        raise FidBenchError(
            f"{path}: needs columns id,score[,label]; lacks {missing} (has {list(frame.columns)})"
        )
    return check_predictions(frame[[c for c in ("id", "score", "label") if c in frame.columns]], str(path))


def check_predictions(frame: pd.DataFrame, name: str = "predictions") -> pd.DataFrame:
    """Validate an ``id,score[,label]`` frame (see the module docstring for what is refused)."""
    out = pd.DataFrame({"id": frame["id"].astype(str).str.strip()})
    if (out["id"].isin(("", "nan"))).any() or frame["id"].isna().any():
        raise FidBenchError(
            f"{name}: {int(frame['id'].isna().sum() + (out['id'] == '').sum())} row(s) without an id"
        )
    score = pd.to_numeric(frame["score"], errors="coerce")
    bad = score.isna() | ~np.isfinite(score.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FidBenchError(
            f"{name}: {int(bad.sum())} score(s) are empty or not numbers (e.g. id {out['id'].iloc[i]!r}: "
            f"{frame['score'].iloc[i]!r})"
        )
    outside = (score < 0) | (score > 1)
    if outside.any():
        i = int(np.flatnonzero(outside.to_numpy())[0])
        raise FidBenchError(
            f"{name}: {int(outside.sum())} score(s) outside [0, 1] (e.g. id {out['id'].iloc[i]!r}: {score.iloc[i]:g}); "
            "scores must be probabilities of 'generated' (apply a sigmoid to logits first)"
        )
    out["score"] = score.astype(np.float64).to_numpy()
    dup = out["id"].duplicated(keep=False)
    if dup.any():
        raise FidBenchError(
            f"{name}: {int(out.loc[dup, 'id'].nunique())} id(s) appear more than once (e.g. {out.loc[dup, 'id'].iloc[0]!r})"
        )
    if "label" in frame.columns:
        label = pd.to_numeric(frame["label"], errors="coerce")
        wrong = ~label.isin((0, 1))
        if wrong.any():
            i = int(np.flatnonzero(wrong.to_numpy())[0])
            raise FidBenchError(
                f"{name}: {int(wrong.sum())} label(s) are not 0 or 1 (e.g. id {out['id'].iloc[i]!r}: {frame['label'].iloc[i]!r})"
            )
        out["label"] = label.astype(np.int64).to_numpy()
    return out


def align_predictions(
    predictions: pd.DataFrame, reference: pd.DataFrame, *, missing: str = "report"
) -> tuple[pd.DataFrame, ImportReport]:
    """Scores frame of the file's scores on the reference rows, and what did not match.

    ``reference`` has ``id``, ``label``, ``split`` (``val``/``test``) and optionally ``group``,
    ``fold`` and ``sha1``; its ids must be unique per split. The result has ``SCORE_COLUMNS`` (and
    ``sha1`` when the reference has it) in the reference's order, for the rows the file scores.
    """
    from fid_bench.contract import score_columns

    if missing not in ("report", "error"):
        raise FidBenchError(f"missing must be 'report' or 'error', got {missing!r}")
    predictions = check_predictions(predictions)
    ref = reference.copy()
    ref["id"] = ref["id"].astype(str)
    for col, default in (("group", ""), ("fold", 0)):
        if col not in ref.columns:
            ref[col] = default
    if ref.duplicated(["split", "id"]).any():
        raise FidBenchError("reference rows repeat an id within a split; align against one hold-out split")
    merged = ref.merge(predictions, on="id", how="left", suffixes=("", "_file"), sort=False)
    if "label_file" in merged.columns:
        scored = merged["score"].notna()
        differ = scored & (merged["label_file"].fillna(-1).astype(int) != merged["label"].astype(int))
        if differ.any():
            ex = merged.loc[differ].iloc[0]
            raise FidBenchError(
                f"{int(differ.sum())} label(s) in the file disagree with the data set "
                f"(e.g. id {ex['id']!r}: file {int(ex['label_file'])}, data {int(ex['label'])}); "
                "is the file about these images?"
            )
    absent = merged["score"].isna()
    report = ImportReport(
        n_file_rows=len(predictions),
        n_matched=int(predictions["id"].isin(set(ref["id"])).sum()),
        missing=merged.loc[absent, ["id", "split"]].reset_index(drop=True),
        unknown=sorted(set(predictions["id"]) - set(ref["id"])),
        n_reference={str(k): int(v) for k, v in ref["split"].value_counts().items()},
    )
    if absent.any():
        if missing == "error":
            raise FidBenchError(
                f"{int(absent.sum())} reference row(s) have no score in the file "
                f"(e.g. id {merged.loc[absent, 'id'].iloc[0]!r}); {report.summary()}"
            )
        # the caller reports it (the command prints report.summary(), the run logs the counts)
        log.info("imported predictions: %s", report.summary())
    if not (merged["split"] == "test").loc[~absent].any():
        raise FidBenchError(
            f"the file scores none of the {int((ref['split'] == 'test').sum())} test rows; {report.summary()}"
        )
    out = merged.loc[~absent].reset_index(drop=True)
    out["label"] = out["label"].astype(np.int64)
    # the reference's content hashes stay with its rows: the file claims to score those images
    return out[score_columns(ref)], report
