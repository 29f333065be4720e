"""Exact duplicates by content hash: extra copies, label conflicts and train -> test/predict leaks.

Owns the checks on the samples table's ``sha1`` column (no file is opened here):

* ``exact_duplicates`` / ``dup_summary``: copies within one split and class (extra copies are
  ``rows - unique hashes`` per group);
* ``label_conflicts``: the same bytes labelled real and generated;
* ``leaks``: ``test`` and ``predict`` rows byte-identical to a ``train`` row.

Every function takes a normalised samples table (label int, sha1 and path strings, "" when missing).

May import: ``fid_bench.data``.
"""

from __future__ import annotations

import pandas as pd

from fid_bench.data.samples import LABEL_NAMES


def _group_lists(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return (
        rows.sort_values("path", kind="stable")
        .groupby(keys, sort=True)
        .agg(n=("id", "size"), ids=("id", list), paths=("path", list))
        .reset_index()
    )


def exact_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per hash with copies within one split and class: split, label, sha1, n, ids, paths."""
    hashed = table[table["sha1"] != ""]
    keys = ["split", "label", "sha1"]
    dup = hashed[hashed.duplicated(keys, keep=False)]
    if dup.empty:
        return pd.DataFrame(columns=[*keys, "n", "ids", "paths"])
    return _group_lists(dup, keys)


def dup_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per split and label: rows, unique hashes, extra copies and the class name (``cls``)."""
    hashed = table[table["sha1"] != ""]
    g = hashed.groupby(["split", "label"])["sha1"].agg(rows="size", unique="nunique").reset_index()
    g["extra"] = g["rows"] - g["unique"]
    g["cls"] = g["label"].map(LABEL_NAMES)
    return g


def label_conflicts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per hash labelled both real and generated: sha1, n_real, n_fake, splits, ids, paths."""
    lab = table[(table["sha1"] != "") & table["label"].isin((0, 1))]
    per = lab.groupby("sha1")["label"].agg(["size", "sum"])
    per = per.assign(n_fake=per["sum"], n_real=per["size"] - per["sum"])
    bad = per[(per["n_real"] > 0) & (per["n_fake"] > 0)]
    cols = ["sha1", "n_real", "n_fake", "splits", "ids", "paths"]
    if bad.empty:
        return pd.DataFrame(columns=cols)
    # lists only for the (few) conflicting hashes: per-group Python work on every hash is slow
    rows = lab[lab["sha1"].isin(bad.index)].sort_values("path", kind="stable")
    g = rows.groupby("sha1").agg(
        splits=("split", lambda s: sorted(set(s))), ids=("id", list), paths=("path", list)
    )
    return bad.join(g).reset_index()[cols]


def leaks(table: pd.DataFrame) -> pd.DataFrame:
    """One row per test/predict row byte-identical to a train row, with the train copies' ids and paths."""
    hashed = table[table["sha1"] != ""]
    train = hashed[hashed["split"] == "train"]
    other = hashed[hashed["split"].isin(("test", "predict")) & hashed["sha1"].isin(train["sha1"])]
    cols = ["id", "path", "split", "label", "sha1", "train_ids", "train_paths", "train_labels"]
    if other.empty:
        return pd.DataFrame(columns=cols)
    copies = train[train["sha1"].isin(other["sha1"])].sort_values("path", kind="stable")
    train_of = copies.groupby("sha1").agg(
        train_ids=("id", list), train_paths=("path", list), train_labels=("label", lambda s: sorted(set(s)))
    )
    return other.join(train_of, on="sha1")[cols].reset_index(drop=True)
