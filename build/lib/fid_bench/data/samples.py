"""The samples table: the one shape every reader produces and everything else consumes.

Columns (``SAMPLE_COLUMNS``):
    id     str   the id as given by the data set (written back verbatim in submissions)
    path   str   absolute path of the image file ("" when no file could be resolved)
    label  int   1 = generated/fake, 0 = real, -1 = unknown (unlabelled test rows)
    split  str   "train" (labelled pool), "test" (labelled held-out split given by the data set)
                 or "predict" (unlabelled rows, e.g. Kaggle test.csv; never dropped)
    group  str   optional source/generator name ("" when unknown)
    sha1   str   content hash of the file bytes ("" when unreadable)

Rows that cannot be used leave the table into ``skipped`` with a reason (SKIP_COLUMNS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

SAMPLE_COLUMNS = ["id", "path", "label", "split", "group", "sha1"]
SKIP_COLUMNS = ["id", "path", "split", "reason"]

LABELLED_SPLITS = ("train", "test")
#: how labels read in reports and metric names
LABEL_NAMES = {0: "real", 1: "fake", -1: "unlabelled"}


@dataclass
class Samples:
    """A data set as read from disk: usable rows plus the rows that were skipped and why."""

    table: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIP_COLUMNS))
    name: str = "data"
    # predict rows whose image could not be read: kept in ``table`` (never dropped), listed here
    unreadable_predict: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIP_COLUMNS))

    def labelled(self) -> pd.DataFrame:
        return self.table[self.table["split"].isin(LABELLED_SPLITS)]

    def fingerprint(self) -> str:
        """Short hash of (id, label, split, sha1) of every row: names the exact data a run saw."""
        import hashlib

        h = hashlib.sha1()
        cols = self.table[["id", "label", "split", "sha1"]].astype(str)
        for row in cols.itertuples(index=False):
            h.update("\x1f".join(row).encode())
            h.update(b"\n")
        return h.hexdigest()[:12]
