"""The file ``predict`` writes: a Kaggle submission (``id,target``) or ``id,path,score,label``.

It is written next to its destination, re-read and validated, and only then moved into place; the
images that could not be read are listed beside it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fid_bench.data.inputs import Inputs
from fid_bench.errors import FidBenchError

if TYPE_CHECKING:
    from fid_bench.contract import Predictor


#: how many unreadable ids are printed on the terminal (all of them go to a side file)
SHOW_UNREADABLE = 20
#: a cell starting with one of these is a formula to a spreadsheet (``=cmd|' /C calc'!A1``)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def check_spreadsheet_safe(ids: Sequence[str]) -> None:
    """Refuse ids a spreadsheet would run as a formula (CSV injection): written verbatim, since a
    submission's ids must equal test.csv's, and quoting or prefixing them would change them. A plain
    number (``-1``, ``+2.5``) is safe and passes."""
    bad = [
        (i, x)
        for i, x in enumerate(ids)
        if str(x).startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(str(x))
    ]
    if bad:
        pos, first = bad[0]
        raise FidBenchError(
            f"{len(bad)} id(s) start like a spreadsheet formula (e.g. {first!r}, row {pos + 1}); refusing to "
            "write them into a CSV a spreadsheet could run (rename the files or fix the ids)"
        )


def build_output(inputs: Inputs, scores: np.ndarray, predictor: Predictor, *, labels: bool) -> pd.DataFrame:
    threshold = float(getattr(predictor, "threshold", 0.5))
    if not math.isfinite(threshold):
        raise FidBenchError(f"the run's stored threshold is {threshold}; cannot write 0/1 labels")
    predicted = (scores >= threshold).astype(np.int64)
    if inputs.kind == "kaggle":
        return pd.DataFrame({"id": inputs.ids, "target": predicted if labels else scores})
    return pd.DataFrame({"id": inputs.ids, "path": inputs.paths, "score": scores, "label": predicted})


def value_checks(columns: Sequence[str], *, labels: bool) -> dict[str, bool]:
    """``{column: must_be_0_or_1}`` for the value columns of an output table."""
    if "target" in columns:  # Kaggle submission
        return {"target": labels}
    return {"score": False, "label": True}


def validate_output(path: Path, expected_ids: Sequence[str], checks: dict[str, bool]) -> int:
    """Re-read a written file: every id once, in order, none a formula; values in [0, 1] (0 or 1 for
    label columns)."""
    check_spreadsheet_safe(expected_ids)
    try:
        df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{path}: written file cannot be read back ({err})") from None
    if len(df) != len(expected_ids):
        raise FidBenchError(f"{path}: {len(df)} rows written for {len(expected_ids)} ids")
    dup = df["id"][df["id"].duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(f"{path}: {len(dup)} duplicate id(s), e.g. {dup[:5]}")
    if df["id"].tolist() != list(expected_ids):
        raise FidBenchError(f"{path}: ids differ from the input ids or their order")
    for column, binary in checks.items():
        if column not in df.columns:
            raise FidBenchError(f"{path}: column {column!r} missing")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if binary:
            bad |= ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise FidBenchError(f"{path}: {int(bad.sum())} {column} value(s) out of range")
    return len(df)


def write_output(df: pd.DataFrame, out: Path, expected_ids: Sequence[str], *, labels: bool) -> None:
    """Write next to ``out``, validate, then move into place: a bad file never replaces a good one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    try:
        validate_output(tmp, expected_ids, value_checks(df.columns, labels=labels))
    except FidBenchError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def report_unreadable(inputs: Inputs, out: Path, prior: float) -> Path | None:
    if not inputs.unreadable:
        return None
    listing = out.with_name(f"{out.stem}.unreadable.csv")
    rows = sorted(inputs.unreadable.items())
    pd.DataFrame(
        {
            "id": [inputs.ids[i] for i, _ in rows],
            "path": [inputs.paths[i] for i, _ in rows],
            "reason": [r for _, r in rows],
        }
    ).to_csv(listing, index=False)
    print(
        f"{len(rows)} image(s) could not be read and got the training prior {prior:.4f}"
        f" (all listed in {listing}):"
    )
    for i, reason in rows[:SHOW_UNREADABLE]:
        print(f"  {inputs.ids[i]}: {reason}")
    if len(rows) > SHOW_UNREADABLE:
        print(f"  ... and {len(rows) - SHOW_UNREADABLE} more")
    return listing
