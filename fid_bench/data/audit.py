"""Data audit: what is wrong with a data set before any detector learns from it.

``audit_samples(samples)`` checks a samples table and returns an ``AuditReport``:

* counts per split and class, and every row the reader skipped or could not read (with reasons);
* exact duplicates by content hash (the table's ``sha1``): within one split and class (the extra
  copies are counted as ``rows - unique hashes`` per group), across classes (label conflicts: the
  same bytes labelled real and generated) and across splits (``test`` rows byte-identical to a
  ``train`` row: leakage; ``predict`` rows identical to a ``train`` row are listed too);
* optional near-duplicates: a 64-bit DCT perceptual hash per distinct file, pairs within a
  Hamming distance threshold, grouped into connected components;
* per-class distributions of file attributes read from headers only (format, width x height,
  colour mode, JPEG quality estimated from the quantisation tables (see ``jpeg_quality``), a
  fingerprint of the tables themselves, chroma subsampling, file size), and a warning when one
  attribute alone separates the classes: its single-feature ROC-AUC reaches ``shortcut_auc``.

Single-feature ROC-AUC: a numeric attribute (file size, pixel count, JPEG quality on JPEG rows)
is used as the score directly and ``max(auc, 1 - auc)`` is reported (either direction is a
shortcut). A categorical attribute is scored by the generated-rate of its category, estimated
out of fold (5 folds, smoothed towards the overall rate, unseen categories get the overall rate)
so that an attribute with many unique values (e.g. every photo its own size) does not look like a
perfect separator just because each value is seen once; a category shared only by one class still
separates it. The audit reads headers, not pixels, so it stays fast on large folders (worker
processes on request for large tables; header parsing is CPU-bound, threads do not help) and caches
the attributes and hashes by content hash when given a ``cache_dir``.

Near-duplicate candidates from the hash are confirmed on 32x32 grey thumbnails before they are
reported (``confirm_pairs``): nearly flat pictures collide in a 64-bit hash.

``fid-bench audit`` (``main``) composes the project config, reads the configured data set and
prints the report; ``--fix OUT.csv`` writes a cleaned manifest (see ``clean_manifest``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fid_bench.data.samples import LABEL_NAMES, SKIP_COLUMNS, Samples
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

#: bump when the header attributes or the perceptual hash change (invalidates the audit cache)
AUDIT_CACHE_VERSION = 1
#: tables with at least this many distinct files are scanned in worker processes
PARALLEL_MIN = 4000
CHUNK_SIZE = 1000
CV_FOLDS = 5
MAX_NEAR_DUP_THRESHOLD = 32
SPLIT_ORDER = ("train", "test", "predict")
#: start of the audit warning about skipped or unreadable rows (a run states those itself)
SKIP_WARNING = "skipped or unreadable:"

CATEGORICAL = ("format", "size", "mode", "jpeg_qtables", "jpeg_subsampling")
NUMERIC = ("file_size", "pixels", "jpeg_quality")
HEADER_COLUMNS = ["format", "width", "height", "mode", "jpeg_quality", "jpeg_qtables", "jpeg_subsampling"]
HEADER_COLUMNS += ["file_size", "error"]
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


# ----------------------------------------------------------------------------- header attributes


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
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        return ("", 0, 0, "", math.nan, "", "", -1, f"header unreadable: {detail}")


@lru_cache(maxsize=256)
def _tables_summary(tables: tuple[tuple[int, tuple[int, ...]], ...]) -> tuple[float, str]:
    """(estimated quality, short fingerprint) of a set of quantisation tables.

    Cached: a data set usually holds a handful of distinct table sets, and this is most of the
    per-file cost of the header scan otherwise.
    """
    from fid_bench.data.jpeg_quality import estimate_quality

    est = estimate_quality(dict(tables))
    fingerprint = hashlib.sha1(repr(tables).encode()).hexdigest()[:8]
    return (float(est) if est is not None else math.nan), fingerprint


def _headers_chunk(paths: list[str]) -> list[tuple]:
    return [read_header(p) for p in paths]


def thumbnail(path: str) -> np.ndarray:
    """32x32 grey version of the decoded image (float64), what the perceptual hash looks at."""
    from PIL import Image

    from fid_bench.data.decode import load_rgb

    grey = load_rgb(path).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def perceptual_hash(path: str) -> int:
    """64-bit DCT hash: 32x32 grey -> 2-D DCT -> 8x8 lowest frequencies -> bit = above their median.

    The DC term is left out of the median so overall brightness does not move every bit. The 63
    other bits are split at their median, so every hash has the same number of ones and Hamming
    distances between hashes are even.
    """
    a = thumbnail(path)
    d = _dct_matrix(32)
    low = (d @ a @ d.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits.astype(np.uint8), bitorder="little").view(np.uint64)[0])


def confirm_pairs(pairs: np.ndarray, paths: Sequence[str], min_corr: float = 0.6) -> np.ndarray:
    """Keep the hash-near pairs whose 32x32 grey thumbnails also agree (Pearson r >= ``min_corr``).

    A 64-bit hash of nearly flat pictures (a small object on an even sky) is decided by faint
    shading, so unrelated images can collide: on CIFAKE at distance <= 4, every hash group mixing
    real and generated images was such a collision (r 0.30..0.58), while the edited copies of one
    photo inspected had r >= 0.6. Two flat thumbnails (no variance) agree when their mean grey levels
    differ by at most 4.
    """
    if len(pairs) == 0:
        return pairs
    involved = np.unique(pairs)
    thumbs: dict[int, np.ndarray | None] = {}
    for i in involved:
        try:
            thumbs[int(i)] = thumbnail(paths[int(i)]).ravel()
        except Exception:  # noqa: BLE001 - a file that broke since hashing just drops its pairs
            thumbs[int(i)] = None
    keep = np.zeros(len(pairs), dtype=bool)
    for k, (i, j) in enumerate(pairs.tolist()):
        a, b = thumbs[i], thumbs[j]
        if a is None or b is None:
            continue
        if a.std() < 1e-6 or b.std() < 1e-6:
            keep[k] = abs(a.mean() - b.mean()) <= 4.0
        else:
            keep[k] = float(np.corrcoef(a, b)[0, 1]) >= min_corr
    return pairs[keep]


@lru_cache(maxsize=2)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


def _phash_chunk(paths: list[str]) -> list[tuple[int, str]]:
    out = []
    for p in paths:
        try:
            h = perceptual_hash(p)
            out.append((h - (1 << 64) if h >= 1 << 63 else h, ""))  # stored as int64 (parquet-friendly)
        except Exception as err:  # noqa: BLE001 - an undecodable file is counted, never raised
            out.append((0, " ".join(str(err).split())[:200] or type(err).__name__))
    return out


def _map_chunks(fn: Any, paths: list[str], workers: int) -> list:
    """``fn`` over chunks of ``paths``; in ``workers`` processes when asked and the job is large.

    Header parsing is CPU-bound Python, so threads do not help (measured slower than one thread);
    processes do, but spawned ones re-import the caller's main script, which must then be guarded
    by ``if __name__ == "__main__"`` (the ``fid-bench`` and ``python -m fid_bench`` entry points
    are). A pool that breaks falls back to one process instead of failing the audit.
    """
    chunks = [paths[i : i + CHUNK_SIZE] for i in range(0, len(paths), CHUNK_SIZE)]
    if workers > 1 and len(paths) >= PARALLEL_MIN:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            # spawn, not fork: the caller may hold threads (MLflow, loggers) that fork would copy mid-state
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                parts = list(pool.map(fn, chunks))
            return [item for part in parts for item in part]
        except (BrokenProcessPool, OSError, RuntimeError) as err:
            log.warning("audit: worker processes failed (%s); continuing in one process", _one_line(err))
    return [item for c in chunks for item in fn(c)]


def _cached_by_sha1(
    kind: str, reps: pd.DataFrame, columns: list[str], fn: Any, workers: int, cache_dir: Path | None
) -> pd.DataFrame:
    """Per-sha1 results of ``fn(paths)``, reusing ``cache_dir/audit/<kind>-v*.parquet`` when given.

    Results depend only on the file bytes, so the content hash is a safe key. Failures are not
    cached (a file may be fixed in place). The cache is replaced atomically; concurrent writers
    may drop each other's new entries but never corrupt it.
    """
    cached = pd.DataFrame(columns=columns, index=pd.Index([], name="sha1"))
    path = None
    if cache_dir is not None:
        path = Path(cache_dir).expanduser() / "audit" / f"{kind}-v{AUDIT_CACHE_VERSION}.parquet"
        if path.exists():
            try:
                cached = pd.read_parquet(path)
            except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
                log.warning("audit cache %s unreadable (%s); rebuilding it", path, err)
    cached = cached[~cached.index.duplicated(keep="last")]
    todo = reps[~reps["sha1"].isin(cached.index)]
    if len(todo):
        t0 = time.perf_counter()
        rows = _map_chunks(fn, todo["path"].tolist(), workers)
        fresh = pd.DataFrame(rows, columns=columns, index=pd.Index(todo["sha1"].to_numpy(), name="sha1"))
        log.info("audit: %s of %d files in %.1f s", kind, len(todo), time.perf_counter() - t0)
        cached = fresh if cached.empty else pd.concat([cached, fresh])
        if path is not None:
            keep = cached[cached["error"] == ""]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            keep.to_parquet(tmp)
            os.replace(tmp, path)
    return cached.loc[reps["sha1"].to_numpy()]


# ----------------------------------------------------------------------------- single-feature AUC


def numeric_auc(values: np.ndarray, y: np.ndarray) -> float:
    """``max(auc, 1 - auc)`` of the raw attribute as a score (either direction is a shortcut)."""
    from fid_bench.evaluation.uncertainty import roc_auc

    auc = roc_auc(y, values)
    return auc if math.isnan(auc) else max(auc, 1.0 - auc)


def categorical_auc(values: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """AUC of the out-of-fold generated-rate of each row's category (see the module docstring)."""
    from fid_bench.evaluation.uncertainty import roc_auc

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


# ----------------------------------------------------------------------------- the report


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
        g = _dup_summary(self.attributes).rename(columns={"cls": "class"})
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


# ----------------------------------------------------------------------------- the audit


def check_settings(shortcut_auc: float, near_dup_threshold: int | None) -> None:
    """One-line errors for settings out of range (checked before any data is read)."""
    if not 0.5 <= shortcut_auc <= 1.0:
        raise FidBenchError(f"audit: shortcut_auc must be in [0.5, 1], got {shortcut_auc}")
    if near_dup_threshold is not None and not 0 <= near_dup_threshold <= MAX_NEAR_DUP_THRESHOLD:
        raise FidBenchError(
            f"audit: near-duplicate threshold must be a Hamming distance in 0..{MAX_NEAR_DUP_THRESHOLD}, "
            f"got {near_dup_threshold}"
        )


def audit_samples(
    samples: Samples,
    *,
    shortcut_auc: float = 0.8,
    near_dup_threshold: int | None = None,
    workers: int = 1,
    cache_dir: Path | str | None = None,
) -> AuditReport:
    """Audit a samples table (see the module docstring). Never raises on bad rows: it reports them.

    ``workers``: processes for the header scan of large tables (1 = in this process; see ``_map_chunks``).
    ``cache_dir``: where header attributes and perceptual hashes are cached by content hash.
    """
    t0 = time.perf_counter()
    check_settings(shortcut_auc, near_dup_threshold)
    workers = max(1, int(workers))
    cache = Path(cache_dir) if cache_dir is not None else None
    table = samples.table.reset_index(drop=True)
    table = table.assign(
        label=table["label"].astype(int),
        sha1=table["sha1"].fillna("").astype(str),
        path=table["path"].fillna("").astype(str),
    )
    warnings: list[str] = []

    counts = _counts(table)
    unreadable = _unreadable(samples, table)

    # header attributes, once per distinct content
    hashed = table[(table["sha1"] != "") & (table["path"] != "")]
    reps = hashed.drop_duplicates("sha1")[["sha1", "path"]]
    headers = _cached_by_sha1("headers", reps, HEADER_COLUMNS, _headers_chunk, workers, cache)
    attrs = _attributes(table, headers)
    bad_header = attrs[attrs["error"] != ""]
    if len(bad_header):
        extra = bad_header[~bad_header["id"].isin(unreadable["id"])]
        extra = extra.assign(path=table.loc[extra.index, "path"], reason=extra["error"])[SKIP_COLUMNS]
        unreadable = pd.concat([unreadable, extra], ignore_index=True)

    duplicates = _duplicates(table)
    conflicts = _label_conflicts(table)
    leaks = _leaks(table)
    shortcuts = _shortcuts(attrs, shortcut_auc)

    near, near_leaks = None, 0
    if near_dup_threshold is not None:
        near, near_leaks = _near_duplicates(table, near_dup_threshold, workers, cache)

    # warnings: one line each, most serious first
    if len(conflicts):
        n = int((conflicts["n_real"] + conflicts["n_fake"]).sum())
        warnings.append(
            f"label conflicts: {len(conflicts)} files ({n} rows) appear both as real and as generated"
        )
    n_leak = int((leaks["split"] == "test").sum())
    if n_leak:
        per = leaks[leaks["split"] == "test"].groupby("label").size()
        detail = ", ".join(f"{LABEL_NAMES[k]} {v}" for k, v in per.items())
        warnings.append(
            f"train->test leakage: {n_leak} test rows are byte-identical to train rows ({detail})"
        )
    summary = _dup_summary(table)
    dup = summary[summary["extra"] > 0]
    if len(dup):
        detail = ", ".join(f"{r.split}/{r.cls} {r.extra}" for r in dup.itertuples())
        warnings.append(
            f"exact duplicates: {int(dup['extra'].sum())} extra copies within a split and class ({detail}); "
            "copies in the train pool can land on both sides of a validation/test split made from it"
        )
    for r in shortcuts[shortcuts["warn"]].itertuples():
        warnings.append(
            f"shortcut: '{r.attribute}' alone separates real from generated (ROC-AUC {r.auc:.3f} >= "
            f"{shortcut_auc:g}; {_describe_split(attrs, r.attribute)}): a detector can learn it instead of "
            "the image content"
        )
    if near is not None:
        cross = int(near["labels"].map(lambda s: {0, 1} <= set(s)).sum())
        if cross:
            warnings.append(f"near-duplicates: {cross} groups of near-identical files carry both labels")
        if near_leaks:
            warnings.append(
                f"near-duplicate leakage: {near_leaks} test rows have a near-identical train image"
            )
    if len(unreadable):
        per = unreadable.groupby("reason").size().sort_values(ascending=False)
        detail = ", ".join(f"{k} {v}" for k, v in per.head(5).items())
        warnings.append(f"{SKIP_WARNING} {len(unreadable)} rows ({detail})")
    if table.empty:
        warnings.append("the data set has no rows")
    elif len(table[table["label"].isin((0, 1))]["label"].unique()) < 2:
        warnings.append("only one class among the labelled rows: nothing to separate")

    report = AuditReport(
        name=samples.name,
        n_rows=len(table),
        counts=counts,
        unreadable=unreadable.reset_index(drop=True),
        duplicates=duplicates,
        label_conflicts=conflicts,
        leaks=leaks,
        attributes=attrs,
        shortcuts=shortcuts,
        shortcut_auc=shortcut_auc,
        near_duplicates=near,
        near_dup_threshold=near_dup_threshold,
        near_dup_leak_rows=near_leaks,
        warnings=warnings,
    )
    report.elapsed_s = time.perf_counter() - t0
    log.info(
        "audit of %s: %d rows, %d warnings, %.1f s", samples.name, len(table), len(warnings), report.elapsed_s
    )
    return report


def _counts(table: pd.DataFrame) -> pd.DataFrame:
    tab = pd.crosstab(table["split"], table["label"].map(LABEL_NAMES))
    tab = tab.reindex(columns=["real", "fake", "unknown"], fill_value=0)
    order = [s for s in SPLIT_ORDER if s in tab.index] + [s for s in tab.index if s not in SPLIT_ORDER]
    tab = tab.reindex(order)
    tab["total"] = tab.sum(axis=1)
    tab.loc["total"] = tab.sum(axis=0)
    tab.index.name = "split"
    tab.columns.name = None
    return tab.astype(int)


def _unreadable(samples: Samples, table: pd.DataFrame) -> pd.DataFrame:
    parts = [df[SKIP_COLUMNS] for df in (samples.skipped, samples.unreadable_predict) if len(df)]
    known = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SKIP_COLUMNS)
    nohash = table[(table["sha1"] == "") & ~table["id"].isin(known["id"])]
    if len(nohash):
        nohash = nohash.assign(reason="unreadable (no content hash)")[SKIP_COLUMNS]
        known = pd.concat([known, nohash], ignore_index=True)
    return known.astype({"reason": str})


def _attributes(table: pd.DataFrame, headers: pd.DataFrame) -> pd.DataFrame:
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


def _group_lists(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return (
        rows.sort_values("path", kind="stable")
        .groupby(keys, sort=True)
        .agg(n=("id", "size"), ids=("id", list), paths=("path", list))
        .reset_index()
    )


def _duplicates(table: pd.DataFrame) -> pd.DataFrame:
    hashed = table[table["sha1"] != ""]
    keys = ["split", "label", "sha1"]
    dup = hashed[hashed.duplicated(keys, keep=False)]
    if dup.empty:
        return pd.DataFrame(columns=[*keys, "n", "ids", "paths"])
    return _group_lists(dup, keys)


def _dup_summary(table: pd.DataFrame) -> pd.DataFrame:
    hashed = table[table["sha1"] != ""]
    g = hashed.groupby(["split", "label"])["sha1"].agg(rows="size", unique="nunique").reset_index()
    g["extra"] = g["rows"] - g["unique"]
    g["cls"] = g["label"].map(LABEL_NAMES)
    return g


def _label_conflicts(table: pd.DataFrame) -> pd.DataFrame:
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


def _leaks(table: pd.DataFrame) -> pd.DataFrame:
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


def _shortcuts(attrs: pd.DataFrame, threshold: float) -> pd.DataFrame:
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


def _describe_split(attrs: pd.DataFrame, attr: str) -> str:
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


# ----------------------------------------------------------------------------- near-duplicates


def near_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes within Hamming distance ``threshold``, shape [k, 2].

    Pigeonhole: split the 64 bits into ``threshold + 1`` chunks; two hashes that differ in at most
    ``threshold`` bits agree exactly on at least one chunk. So only hashes sharing a chunk value are
    compared, instead of all n^2 pairs.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    bounds = np.linspace(0, 64, threshold + 2).astype(int)
    found = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        k = key[order]
        edges = np.flatnonzero(np.diff(k)) + 1
        starts, ends = np.r_[0, edges], np.r_[edges, k.size]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            members = order[s:e]
            for b in range(0, members.size, 2048):  # bounded blocks: one huge bucket stays in memory
                rows = members[b : b + 2048]
                dist = np.bitwise_count(h[rows][:, None] ^ h[members][None, :])
                i, j = np.nonzero(dist <= threshold)
                a, c = rows[i], members[j]
                keep = a < c
                found.append(np.stack([a[keep], c[keep]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def _near_duplicates(
    table: pd.DataFrame, threshold: int, workers: int, cache: Path | None
) -> tuple[pd.DataFrame, int]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    hashed = table[(table["sha1"] != "") & (table["path"] != "")]
    reps = hashed.drop_duplicates("sha1")[["sha1", "path"]].reset_index(drop=True)
    ph = _cached_by_sha1("phash", reps, ["phash", "error"], _phash_chunk, workers, cache)
    ok = (ph["error"] == "").to_numpy()
    reps = reps[ok].reset_index(drop=True)
    hashes = ph["phash"].to_numpy()[ok].astype(np.int64).view(np.uint64)
    cols = ["group", "n_files", "n_rows", "labels", "splits", "sha1s", "paths"]
    pairs = confirm_pairs(near_pairs(hashes, threshold), reps["path"].tolist())
    if len(pairs) == 0:
        return pd.DataFrame(columns=cols), 0
    n = len(reps)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    reps["near_group"] = comp
    grouped = reps[sizes[comp] > 1]
    rows = hashed.drop(columns="group").merge(grouped[["sha1", "near_group"]], on="sha1")
    out = []
    for gid, g in rows.sort_values("path", kind="stable").groupby("near_group"):
        first = g.drop_duplicates("sha1")
        out.append(
            (int(gid), len(first), len(g), g["label"].tolist(), g["split"].tolist(), first["sha1"].tolist(),
             first["path"].tolist())
        )  # fmt: skip
    near = pd.DataFrame(out, columns=cols)
    # a test row leaks when its group holds a train row with different bytes (exact copies are counted apart)
    train_groups = rows[rows["split"] == "train"][["near_group", "sha1"]]
    test_rows = rows[rows["split"] == "test"]
    leaky = test_rows.merge(train_groups, on="near_group", suffixes=("", "_train"))
    leaky = leaky[leaky["sha1"] != leaky["sha1_train"]]
    return near, int(leaky["id"].nunique())


# ----------------------------------------------------------------------------- --fix


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
    conflicts = report.label_conflicts["sha1"] if report is not None else _label_conflicts(t)["sha1"]
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


# ----------------------------------------------------------------------------- command line


def _settings_defaults(conf_dir: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    path = conf_dir / "audit.yaml"
    if not path.exists():
        return {}
    node = OmegaConf.load(path)
    return dict(OmegaConf.to_container(node.get("audit", node), resolve=True))  # type: ignore[arg-type]


def audit_settings(cfg: Any, conf_dir: Path | None = None) -> dict[str, Any]:
    """``audit_samples`` keyword arguments from a composed config (``cfg.audit``, else conf/audit.yaml)."""
    from omegaconf import OmegaConf

    settings = _settings_defaults(conf_dir or _conf_dir())
    node = OmegaConf.select(cfg, "audit", default=None)
    if node is not None:
        settings.update(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    cache = OmegaConf.select(cfg, "features.cache_dir", default=None)
    return {
        "shortcut_auc": float(settings.get("shortcut_auc", 0.8)),
        "near_dup_threshold": settings.get("near_dup_threshold"),
        "workers": int(settings.get("workers") or 1),
        "cache_dir": Path(str(cache)).expanduser() if cache else None,
    }


def audit_from_config(samples: Samples, cfg: Any) -> AuditReport:
    """The audit a benchmark run does on start: settings from ``cfg.audit``, cache in ``features.cache_dir``."""
    return audit_samples(samples, **audit_settings(cfg))


def _conf_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "conf"


def _compose(overrides: list[str], conf_dir: Path) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    # audit.* overrides are applied here, so they work whether or not config.yaml includes audit
    own = [o for o in overrides if o.lstrip("+~").startswith("audit.")]
    rest = [o for o in overrides if o not in own]
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=rest)
        audit = OmegaConf.create({"audit": _settings_defaults(conf_dir)})
        if "audit" in cfg:
            audit = OmegaConf.merge(audit, {"audit": cfg.audit})
        audit = OmegaConf.merge(audit, OmegaConf.from_dotlist([o.lstrip("+") for o in own]))
        OmegaConf.set_struct(cfg, False)
        cfg.audit = audit.audit
        return cfg
    except (HydraException, OmegaConfBaseException) as err:
        raise FidBenchError(f"config: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(" Config search path:")[0]  # Hydra appends its search path: noise for a user


def _read_samples(cfg: Any) -> Samples:
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from fid_bench.experiment import load_samples

    try:
        return load_samples(cfg)
    except MissingMandatoryValue as err:
        key = str(getattr(err, "full_key", "") or "a value")
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("data.reader.") and OmegaConf.is_missing(cfg.data, leaf):
            key = f"data.{leaf}"  # the reader's fields interpolate data.*: name what the user sets
        raise FidBenchError(f"config: {key} is required (e.g. {key}=/path/to/data)") from None
    except (InstantiationException, OmegaConfBaseException) as err:
        cause: BaseException | None = err
        while cause is not None:  # Hydra wraps the reader's own one-line errors
            if isinstance(cause, FidBenchError):
                raise FidBenchError(str(cause)) from None
            cause = cause.__cause__
        raise FidBenchError(f"data reader: {_one_line(err)}") from None


def main(argv: list[str] | None = None) -> int:
    """``fid-bench audit [overrides...] [--fix OUT.csv] [--json OUT.json] [--near-dup-threshold N]``.

    Exit status: 0 when the audit ran (warnings or not; 1 with ``--strict`` when it warned),
    2 on a user error (printed as one line).
    """
    parser = argparse.ArgumentParser(
        prog="fid-bench audit",
        description="Audit a data set: counts, unreadable files, duplicates, label conflicts, leaks, "
        "near-duplicates and attribute shortcuts. Overrides are Hydra-style, e.g. "
        "'data=folder data.root=/data/cifake'.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=kaggle data.root=/x")
    parser.add_argument(
        "--fix", metavar="OUT.csv", type=Path, help="write a cleaned manifest (id,path,label,split)"
    )
    parser.add_argument("--json", metavar="OUT.json", type=Path, help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="OUT.md", type=Path, help="write the report as Markdown")
    parser.add_argument(
        "--near-dup-threshold", metavar="N", type=int, default=None,
        help="also find near-duplicates: Hamming distance <= N between 64-bit perceptual hashes (off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--shortcut-auc", type=float, default=None, help="warn at this single-attribute ROC-AUC"
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="processes for reading headers (default: audit.workers, else the CPU count up to 8)",
    )  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the audit warns")
    parser.add_argument("--config-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args(argv)  # overrides may come after the flags
    from omegaconf import OmegaConf

    try:
        cfg = _compose(list(args.overrides), args.config_dir or _conf_dir())
        settings = audit_settings(cfg, args.config_dir)
        if args.near_dup_threshold is not None:
            settings["near_dup_threshold"] = args.near_dup_threshold
        if args.shortcut_auc is not None:
            settings["shortcut_auc"] = args.shortcut_auc
        if args.workers is not None:
            settings["workers"] = args.workers
        elif OmegaConf.select(cfg, "audit.workers", default=None) is None:
            settings["workers"] = min(os.cpu_count() or 1, 8)  # this entry point is safe for worker processes
        check_settings(settings["shortcut_auc"], settings["near_dup_threshold"])
        samples = _read_samples(cfg)
        report = audit_samples(samples, **settings)
        print(report.to_markdown(), end="")
        if args.json:
            _write_text(args.json, json.dumps(report.to_dict(), indent=1))
            print(f"\nreport written to {args.json}")
        if args.markdown:
            _write_text(args.markdown, report.to_markdown())
        if args.fix:
            _write_fix(samples, report, args.fix)
    except FidBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if args.strict and report.warnings else 0


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        raise FidBenchError(f"cannot write {path}: {err.strerror or err}") from None


def _write_fix(samples: Samples, report: AuditReport, out: Path) -> None:
    manifest, removed = clean_manifest(samples, report)
    removed_path = out.with_name(out.stem + ".removed.csv")
    _write_text(out, manifest.to_csv(index=False))
    _write_text(removed_path, removed.to_csv(index=False))
    print(f"\ncleaned manifest: {out} ({len(manifest)} rows kept, {len(removed)} removed; images untouched)")
    for (reason, split, label), n in removed.groupby(["reason", "split", "label"]).size().items():
        print(f"  removed {n:6d} {split}/{LABEL_NAMES[int(label)]}: {reason}")
    if len(removed):
        print(f"  every removed row with its reason: {removed_path}")
