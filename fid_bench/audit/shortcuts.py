"""Shortcuts: file attributes that alone separate real from generated images.

Owns the single-feature ROC-AUC of each header attribute against the label (``shortcut_table``)
and the one-line description of how the classes differ in an attribute (``describe_split``).

A numeric attribute (file size, pixel count, JPEG quality on JPEG rows) is used as the score
directly and ``max(auc, 1 - auc)`` is reported (either direction is a shortcut). A categorical
attribute is scored by the generated-rate of its category, estimated out of fold (5 folds,
smoothed towards the overall rate, unseen categories get the overall rate) so that an attribute
with many unique values (e.g. every photo its own size) does not look like a perfect separator
just because each value is seen once; a category shared only by one class still separates it.
The ROC-AUC itself is the evaluation layer's (``fid_bench.evaluation.uncertainty.roc_auc``).

May import: ``fid_bench.data``, ``fid_bench.evaluation``, ``fid_bench.audit.headers``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fid_bench.audit.headers import CATEGORICAL, NUMERIC
from fid_bench.data.samples import LABEL_NAMES
from fid_bench.evaluation.uncertainty import roc_auc

CV_FOLDS = 5


def numeric_auc(values: np.ndarray, y: np.ndarray) -> float:
    """``max(auc, 1 - auc)`` of the raw attribute as a score (either direction is a shortcut)."""
    auc = roc_auc(y, values)
    return auc if math.isnan(auc) else max(auc, 1.0 - auc)


def categorical_auc(values: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """AUC of the out-of-fold generated-rate of each row's category (see the module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    codes, uniques = pd.factorize(pd.Series(values).astype(str))
    if len(uniques) == 1 and 0 < y.sum() < y.size:
        return 0.5  # one value carries no information (out-of-fold rates would only add noise)
    fold = np.random.default_rng(seed).permutation(y.size) % folds
    prior = y.mean() if y.size else math.nan
    n_all = np.bincount(codes, minlength=codes.max() + 1 if codes.size else 0).astype(np.float64)
    pos_all = np.bincount(codes, weights=y, minlength=n_all.size)
    score = np.empty(y.size)
    for k in range(folds):
        rows = fold == k
        n_k = np.bincount(codes[rows], minlength=n_all.size)
        pos_k = np.bincount(codes[rows], weights=y[rows], minlength=n_all.size)
        # one pseudo-row at the overall rate: unseen categories score the prior, rare ones lean to it
        rate = (pos_all - pos_k + prior) / (n_all - n_k + 1.0)
        score[rows] = rate[codes[rows]]
    return roc_auc(y, score)


def shortcut_table(attrs: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per attribute: attribute, kind, auc, n, warn (auc >= ``threshold``).

    ``attrs`` is the attribute table of ``headers.attributes``; rows with a header error or no
    label are left out.
    """
    ok = attrs[(attrs["error"] == "") & attrs["label"].isin((0, 1))]
    y = ok["label"].to_numpy()
    rows = []
    for attr in CATEGORICAL:
        rows.append((attr, "categorical", categorical_auc(ok[attr].to_numpy(), y), len(ok)))
    for attr in NUMERIC:
        vals = ok[attr].to_numpy(dtype=np.float64)
        have = ~np.isnan(vals)  # JPEG quality exists for JPEG rows only
        rows.append((attr, "numeric", numeric_auc(vals[have], y[have]), int(have.sum())))
    out = pd.DataFrame(rows, columns=["attribute", "kind", "auc", "n"])
    out["warn"] = out["auc"].fillna(0.0) >= threshold
    return out


def describe_split(attrs: pd.DataFrame, attr: str) -> str:
    """A short description of how the classes differ in ``attr``, for the warning line."""
    ok = attrs[(attrs["error"] == "") & attrs["label"].isin((0, 1))]
    parts = []
    for label in (0, 1):
        vals = ok.loc[ok["label"] == label, attr]
        if attr in NUMERIC:
            vals = vals.dropna()
            if len(vals):
                parts.append(f"{LABEL_NAMES[label]} median {vals.median():g}")
        elif len(vals):
            top = vals.astype(str).replace("", "-").value_counts(normalize=True)
            parts.append(f"{LABEL_NAMES[label]} mostly {top.index[0]} ({top.iloc[0]:.0%})")
    return ", ".join(parts)


#: attributes a format alignment (``data.align``) takes away: the last encoding of every image
FORMAT_ATTRIBUTES = ("format", "jpeg_quality", "jpeg_qtables", "jpeg_subsampling", "file_size")
SIZE_ATTRIBUTES = ("size", "pixels")


def remedy(attribute: str, min_jpeg_quality: float | None = None) -> str:
    """The option that removes a shortcut in ``attribute`` before training, for the warning line ("" if none).

    The suggested quality is the lowest JPEG quality in the data (96 without JPEGs): re-encoding
    above a file's own quality leaves its earlier, coarser compression visible to a detector.
    """
    q = int(min_jpeg_quality) if min_jpeg_quality is not None and min_jpeg_quality == min_jpeg_quality else 96
    if attribute in FORMAT_ATTRIBUTES:
        return (
            f"; set data.align='{{format: jpeg, quality: {q}}}' to re-encode every image the same way "
            "before any encoder sees it"
        )
    if attribute in SIZE_ATTRIBUTES:
        return f"; set data.align='{{format: jpeg, quality: {q}, size: 256}}' to bring every image to one size and format"
    return ""
