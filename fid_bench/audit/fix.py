"""``--fix``: a cleaned manifest without label conflicts, leaks and duplicate copies.

Owns ``clean_manifest``: which rows of a samples table to drop, and why. Images on disk are
never touched; writing the manifest is the command's job.

May import: ``fid_bench.data``, ``fid_bench.audit.duplicates``, ``fid_bench.audit.report``.
"""

from __future__ import annotations

import pandas as pd

from fid_bench.audit.duplicates import label_conflicts
from fid_bench.audit.report import AuditReport
from fid_bench.data.samples import Samples


def clean_manifest(samples: Samples, report: AuditReport | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, removed): the table without label conflicts, leaks and duplicate copies.

    * every labelled row whose bytes carry both labels is removed (no way to know which is right);
    * every ``test`` row byte-identical to a ``train`` row is removed (the train copy stays);
    * within one split and class, duplicate copies collapse to the first row by path.
    ``predict`` rows are never removed (a submission needs every id). The manifest has columns
    id, path, label, split; ``removed`` adds ``reason``. Images on disk are never touched.
    """
    t = samples.table.reset_index(drop=True)
    t = t.assign(sha1=t["sha1"].fillna("").astype(str), label=t["label"].astype(int))
    hashed = (t["sha1"] != "") & t["label"].isin((0, 1)) & t["split"].isin(("train", "test"))
    conflicts = report.label_conflicts["sha1"] if report is not None else label_conflicts(t)["sha1"]
    reason = pd.Series("", index=t.index)
    reason[hashed & t["sha1"].isin(set(conflicts))] = "label conflict"
    train_hashes = set(t.loc[(t["split"] == "train") & (reason == "") & hashed, "sha1"])
    reason[(reason == "") & hashed & (t["split"] == "test") & t["sha1"].isin(train_hashes)] = (
        "leak (test copy of a train image)"
    )
    alive = t[(reason == "") & hashed].sort_values("path", kind="stable")
    copies = alive.index[alive.duplicated(["split", "label", "sha1"], keep="first")]
    reason[copies] = "duplicate (extra copy within split and class)"
    cols = ["id", "path", "label", "split"]
    removed = t.loc[reason != "", cols].assign(reason=reason[reason != ""])
    return t.loc[reason == "", cols].reset_index(drop=True), removed.reset_index(drop=True)
