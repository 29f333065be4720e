"""What one job reads before it trains: its samples, its folds and its extra data sets.

``read_job_inputs`` reads them together, at the start of the job, so a broken extra set or a fold
plan the data cannot satisfy fails in one line before any training (not after an hour of it), and
the job's later stages (audit, fit and score, logging) get tables, never config nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fid_bench.data.readers import read_samples
from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    import pandas as pd

    from fid_bench.data.samples import Samples
    from fid_bench.data.splits import Fold, FoldPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtraSet:
    """One ``eval.extra`` data set: its ``name`` (the metric prefix), ``root`` and the ``data`` node
    ``read_samples`` reads it with (built from the config by ``job_spec.extra_sets``)."""

    name: str
    root: str
    data: Any


def read_extra_set(extra: ExtraSet) -> pd.DataFrame:
    """The labelled rows of an extra data set, read as every data set is (``read_samples``)."""
    samples = read_samples(extra.data)
    if len(samples.skipped):
        log.warning("eval.extra %s: skipped %d unreadable or invalid rows", extra.name, len(samples.skipped))
    table = samples.labelled()
    if table.empty:
        raise FidBenchError(f"eval.extra {extra.name!r}: no labelled images under {extra.root}")
    return table


@dataclass(frozen=True)
class JobInputs:
    """A job's data, read: the samples, the job's folds (hold-out, K-fold or leave-one-group-out, as
    planned: a search trial's stand-in of validation for test rows happens when scoring), the
    leave-one-source-out folds (or none) and each extra set's labelled rows."""

    samples: Samples
    folds: list[Fold]
    source_folds: list[Fold]
    extra: list[tuple[ExtraSet, pd.DataFrame]]


def read_job_inputs(
    data: Any,
    plan: FoldPlan,
    extra_sets: Sequence[ExtraSet] = (),
    *,
    samples: Samples | None = None,
    final: bool = True,
) -> JobInputs:
    """Read the ``data`` node (unless ``samples`` were read already), plan the folds, read the extra sets.

    ``final`` False (a search trial) keeps the job's first test fold out of the source folds and
    reads no extra set: a trial never sees rows the final run is tested on.
    """
    if samples is None:
        samples = read_samples(data)
    table = samples.table
    folds = plan.job_folds(table)
    source_folds = plan.source_folds(table, folds, final=final)
    extra = [(x, read_extra_set(x)) for x in extra_sets] if final else []
    return JobInputs(samples=samples, folds=folds, source_folds=source_folds, extra=extra)
