"""File attributes read from image headers only (no pixel decode), and the per-row attribute table.

Owns ``read_header`` (format, width x height, colour mode, JPEG quality estimated from the
quantisation tables, a fingerprint of the tables, chroma subsampling, file size), the attribute
names the shortcut check looks at (``CATEGORICAL``, ``NUMERIC``) and ``attributes``, which joins
the header results of each distinct file back onto every row of a samples table.

The JPEG quality estimate itself lives in ``fid_bench.data.jpeg_quality``: it is knowledge of the
JPEG format (libjpeg's tables), useful to anything that reads or checks JPEG files, not an audit rule.

May import: ``fid_bench.data``.
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache

import numpy as np
import pandas as pd

from fid_bench.data.jpeg_quality import estimate_quality
from fid_bench.errors import one_line

CATEGORICAL = ("format", "size", "mode", "jpeg_qtables", "jpeg_subsampling")
NUMERIC = ("file_size", "pixels", "jpeg_quality")
HEADER_COLUMNS = ["format", "width", "height", "mode", "jpeg_quality", "jpeg_qtables", "jpeg_subsampling"]
HEADER_COLUMNS += ["file_size", "error"]
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def read_header(path: str) -> tuple:
    """File attributes from the header only (no pixel decode); ``error`` is "" on success."""
    from PIL import Image, JpegImagePlugin

    try:
        file_size = os.stat(path).st_size
        with Image.open(path) as img:
            fmt = img.format or "unknown"
            width, height = img.size
            quality, qtables, sampling = math.nan, "", ""
            if fmt == "JPEG":
                tables = getattr(img, "quantization", None) or {}
                quality, qtables = _tables_summary(tuple((k, tuple(v)) for k, v in sorted(tables.items())))
                sampling = _SUBSAMPLING.get(JpegImagePlugin.get_sampling(img), "other")
            return (fmt, width, height, img.mode, quality, qtables, sampling, file_size, "")
    except Exception as err:  # noqa: BLE001 - any unreadable header is counted, never raised
        detail = one_line(err)[:200]
        return ("", 0, 0, "", math.nan, "", "", -1, f"header unreadable: {detail}")


@lru_cache(maxsize=256)
def _tables_summary(tables: tuple[tuple[int, tuple[int, ...]], ...]) -> tuple[float, str]:
    """(estimated quality, short fingerprint) of a set of quantisation tables.

    Cached: a data set usually holds a handful of distinct table sets, and this is most of the
    per-file cost of the header scan otherwise.
    """
    est = estimate_quality(dict(tables))
    fingerprint = hashlib.sha1(repr(tables).encode()).hexdigest()[:8]
    return (float(est) if est is not None else math.nan), fingerprint


def headers_chunk(paths: list[str]) -> list[tuple]:
    """``read_header`` of each path (a module-level function, so worker processes can run it)."""
    return [read_header(p) for p in paths]


def attributes(table: pd.DataFrame, headers: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``table``: id, split, label, sha1 and the header attributes of its file.

    ``headers`` holds one row of ``HEADER_COLUMNS`` per sha1. Rows without a content hash or path
    get the error "not read"; ``size`` ("WxH") and ``pixels`` are derived from width and height.
    """
    attrs = table[["id", "split", "label", "sha1"]].copy()
    hashed = (table["sha1"] != "") & (table["path"] != "")
    h = headers.reset_index().drop_duplicates("sha1").set_index("sha1")
    for col in HEADER_COLUMNS:
        attrs[col] = table["sha1"].map(h[col]) if len(h) else np.nan
    attrs.loc[~hashed, "error"] = "not read"
    attrs["error"] = attrs["error"].fillna("not read").astype(str)
    w, hgt = pd.to_numeric(attrs["width"]), pd.to_numeric(attrs["height"])
    attrs["size"] = np.where(
        attrs["error"] == "",
        w.fillna(0).astype(int).astype(str) + "x" + hgt.fillna(0).astype(int).astype(str),
        "",
    )
    attrs["pixels"] = (w * hgt).astype(float)
    attrs["file_size"] = pd.to_numeric(attrs["file_size"]).astype(float)
    attrs["jpeg_quality"] = pd.to_numeric(attrs["jpeg_quality"]).astype(float)
    for col in ("format", "mode", "jpeg_qtables", "jpeg_subsampling"):
        attrs[col] = attrs[col].fillna("").astype(str)
    return attrs
