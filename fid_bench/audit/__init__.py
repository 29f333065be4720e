"""Data audit: what is wrong with a data set before any detector learns from it.

``audit_samples(samples)`` checks a samples table and returns an ``AuditReport``:

* counts per split and class, and every row the reader skipped or could not read (with reasons);
* exact duplicates by content hash (the table's ``sha1``): within one split and class (the extra
  copies are counted as ``rows - unique hashes`` per group), across classes (label conflicts: the
  same bytes labelled real and generated) and across splits (``test`` rows byte-identical to a
  ``train`` row: leakage; ``predict`` rows identical to a ``train`` row are listed too);
* optional near-duplicates: a 64-bit DCT perceptual hash per distinct file, pairs within a
  Hamming distance threshold, confirmed on 32x32 grey thumbnails, grouped into connected components;
* per-class distributions of file attributes read from headers only (format, width x height,
  colour mode, JPEG quality estimated from the quantisation tables, a fingerprint of the tables
  themselves, chroma subsampling, file size), and a warning when one attribute alone separates the
  classes: its single-feature ROC-AUC reaches ``shortcut_auc``.

The audit reads headers, not pixels, so it stays fast on large folders (worker processes on
request for large tables; header parsing is CPU-bound, threads do not help) and caches the
attributes and hashes by content hash when given a ``cache_dir``. ``clean_manifest`` turns a
report into a manifest without label conflicts, leaks and duplicate copies (``fid-bench audit --fix``).

Modules, each owning one concern:
    core        ``audit_samples``: runs the checks, words the warnings; settings from a config
    headers     file attributes from image headers (JPEG quality via ``fid_bench.data.jpeg_quality``)
    hashing     perceptual hash, near pairs, their confirmation and grouping
    duplicates  exact duplicates, label conflicts, leaks (content hashes only)
    shortcuts   single-feature ROC-AUCs of the attributes
    report      ``AuditReport``: summaries, metrics, Markdown and JSON
    fix         ``clean_manifest``
    scan        per-file work in chunks and worker processes, cached by content hash

The package stands above ``fid_bench.data`` and ``fid_bench.evaluation``: it may import those and
``fid_bench.errors``, never ``fid_bench.jobs.experiment`` or ``fid_bench.commands``. Only
``fid_bench.jobs.experiment`` (the audit at the start of every run) and the ``fid-bench audit`` command
(``fid_bench.commands.audit_command``) import it.
"""

from fid_bench.audit.core import (
    SKIP_WARNING,
    audit_from_config,
    audit_job,
    audit_samples,
    audit_settings,
    audit_sources,
    check_settings,
)
from fid_bench.audit.fix import clean_manifest
from fid_bench.audit.report import AuditReport

__all__ = [
    "SKIP_WARNING",
    "AuditReport",
    "audit_from_config",
    "audit_job",
    "audit_sources",
    "audit_samples",
    "audit_settings",
    "check_settings",
    "clean_manifest",
]
