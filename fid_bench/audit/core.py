"""The audit itself: run every check on a samples table and collect the warnings into a report.

Owns ``audit_samples`` (the order of the checks and the wording of each warning),
``check_settings`` (one-line errors for settings out of range), the counts per split and class,
the list of skipped or unreadable rows, and ``audit_settings`` / ``audit_from_config``, which take
the audit's keyword arguments from a composed config it is handed (``cfg.audit``,
``features.cache_dir``); it never looks the config up itself.

May import: ``fid_bench.data``, ``fid_bench.errors`` and the other ``fid_bench.audit`` modules.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.audit import duplicates, hashing, headers, shortcuts
from fid_bench.audit.report import SPLIT_ORDER, AuditReport
from fid_bench.audit.scan import cached_by_sha1
from fid_bench.data.samples import LABEL_NAMES, SKIP_COLUMNS, Samples
from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

#: start of the audit warning about skipped or unreadable rows (a run states those itself)
SKIP_WARNING = "skipped or unreadable:"


def check_settings(shortcut_auc: float | None = None, near_dup_threshold: int | None = None) -> None:
    """One-line errors for settings out of range (checked before any data is read; None is not checked)."""
    if shortcut_auc is not None and not 0.5 <= shortcut_auc <= 1.0:
        raise FidBenchError(f"audit: shortcut_auc must be in [0.5, 1], got {shortcut_auc}")
    if near_dup_threshold is not None and not 0 <= near_dup_threshold <= hashing.MAX_NEAR_DUP_THRESHOLD:
        raise FidBenchError(
            f"audit: near-duplicate threshold must be a Hamming distance in 0..{hashing.MAX_NEAR_DUP_THRESHOLD}, "
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
    """Audit a samples table (see the package docstring). Never raises on bad rows: it reports them.

    ``workers``: processes for the header scan of large tables (1 = in this process; see ``scan.map_chunks``).
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
    header_rows = cached_by_sha1(
        "headers", reps, headers.HEADER_COLUMNS, headers.headers_chunk, workers, cache
    )
    attrs = headers.attributes(table, header_rows)
    bad_header = attrs[attrs["error"] != ""]
    if len(bad_header):
        extra = bad_header[~bad_header["id"].isin(unreadable["id"])]
        extra = extra.assign(path=table.loc[extra.index, "path"], reason=extra["error"])[SKIP_COLUMNS]
        unreadable = pd.concat([unreadable, extra], ignore_index=True)

    dup_groups = duplicates.exact_duplicates(table)
    conflicts = duplicates.label_conflicts(table)
    leak_rows = duplicates.leaks(table)
    shortcut_rows = shortcuts.shortcut_table(attrs, shortcut_auc)

    near, near_leaks = None, 0
    if near_dup_threshold is not None:
        near, near_leaks = hashing.near_duplicates(table, near_dup_threshold, workers, cache)

    # warnings: one line each, most serious first
    if len(conflicts):
        n = int((conflicts["n_real"] + conflicts["n_fake"]).sum())
        warnings.append(
            f"label conflicts: {len(conflicts)} files ({n} rows) appear both as real and as generated"
        )
    n_leak = int((leak_rows["split"] == "test").sum())
    if n_leak:
        per = leak_rows[leak_rows["split"] == "test"].groupby("label").size()
        detail = ", ".join(f"{LABEL_NAMES[k]} {v}" for k, v in per.items())
        warnings.append(
            f"train->test leakage: {n_leak} test rows are byte-identical to train rows ({detail})"
        )
    summary = duplicates.dup_summary(table)
    dup = summary[summary["extra"] > 0]
    if len(dup):
        detail = ", ".join(f"{r.split}/{r.cls} {r.extra}" for r in dup.itertuples())
        warnings.append(
            f"exact duplicates: {int(dup['extra'].sum())} extra copies within a split and class ({detail}); "
            "copies in the train pool can land on both sides of a validation/test split made from it"
        )
    qualities = attrs["jpeg_quality"].dropna() if "jpeg_quality" in attrs.columns else pd.Series(dtype=float)
    min_quality = float(qualities.min()) if len(qualities) else None
    for r in shortcut_rows[shortcut_rows["warn"]].itertuples():
        warnings.append(
            f"shortcut: '{r.attribute}' alone separates real from generated (ROC-AUC {r.auc:.3f} >= "
            f"{shortcut_auc:g}; {shortcuts.describe_split(attrs, r.attribute)}): a detector can learn it instead of "
            f"the image content{shortcuts.remedy(r.attribute, min_quality)}"
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
        duplicates=dup_groups,
        label_conflicts=conflicts,
        leaks=leak_rows,
        attributes=attrs,
        shortcuts=shortcut_rows,
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


def audit_settings(cfg: Any) -> dict[str, Any]:
    """``audit_samples`` keyword arguments from a composed config (``cfg.audit``, ``features.cache_dir``).

    Settings missing from ``cfg.audit`` take the defaults of conf/audit.yaml (shortcut_auc 0.8, no
    near-duplicate check, one process).
    """
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "audit", default=None)
    settings = OmegaConf.to_container(node, resolve=True) if node is not None else {}
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


def audit_sources(samples: Samples, **settings: Any) -> dict[str, AuditReport]:
    """One audit per source of a ``data=multi`` table (its ``group`` column), so a shortcut inside one
    source is not diluted by the others; each report's warnings start with the source's name.
    ``settings``: those of ``audit_samples``."""
    table = samples.table
    out: dict[str, AuditReport] = {}
    for name in sorted(set(table["group"].fillna("").astype(str)) - {""}):
        prefix = f"{name}/"
        part = Samples(
            table=table[table["group"] == name].reset_index(drop=True),
            skipped=samples.skipped[samples.skipped["id"].astype(str).str.startswith(prefix)],
            name=f"{samples.name}/{name}",
            unreadable_predict=samples.unreadable_predict[
                samples.unreadable_predict["id"].astype(str).str.startswith(prefix)
            ],
        )
        report = audit_samples(part, **settings)
        report.warnings = [f"source {name}: {w}" for w in report.warnings]
        out[name] = report
    return out


def audit_job(
    samples: Samples, settings: dict[str, Any], *, per_source: bool = False
) -> tuple[AuditReport, dict[str, AuditReport]]:
    """The audit at the start of a job: the whole table and, with ``per_source`` (``data=multi``),
    each source on its own, so a shortcut inside one source is named with it. Every warning is
    logged except the skipped rows' (the run states those itself, in one line)."""
    report = audit_samples(samples, **settings)
    parts = audit_sources(samples, **settings) if per_source else {}
    for warning in [*report.warnings, *(w for part in parts.values() for w in part.warnings)]:
        # a source's warning starts with its name: "source sd_art: skipped or unreadable: ..."
        if not (warning.startswith(SKIP_WARNING) or warning.split(": ", 1)[-1].startswith(SKIP_WARNING)):
            log.warning("audit: %s", warning)
    return report, parts
