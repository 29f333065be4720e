"""Reading an input CSV (Kaggle's train.csv / test.csv, an imported ``id,score`` file) by its header.

Column names are matched without case and surrounding spaces (``ID`` is ``id``). Two header cells
that name the same column that way are refused in one line naming them: pandas would keep both
(``target`` and ``TARGET``) and a later lookup by the lower-cased name would silently take one of
them (in a trial, the inverted labels of the second), or crash on a frame where a name is a table.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.errors import FidBenchError, one_line


def column_key(name: object) -> str:
    """The name a column is matched by."""
    return str(name).strip().lower()


def duplicate_columns(header: list[str]) -> dict[str, list[str]]:
    """``{matched name: [the header cells that mean it]}`` for names given more than once."""
    cells: dict[str, list[str]] = defaultdict(list)
    for cell in header:
        cells[column_key(cell)].append(cell)
    return {key: names for key, names in cells.items() if len(names) > 1}


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fp:
        return next(csv.reader(fp), [])


def read_csv_table(path: str | Path, required: tuple[str, ...], **read_csv: Any) -> pd.DataFrame:
    """The CSV at ``path`` with matched (lower-cased, stripped) column names.

    One ``FidBenchError`` line for a missing or unreadable file, a header naming a column twice, or a
    missing ``required`` column. ``read_csv`` goes to ``pandas.read_csv``.
    """
    path = Path(path)
    try:
        header = _header(path)
        frame = pd.read_csv(path, encoding="utf-8-sig", **read_csv)
    except FileNotFoundError:
        raise FidBenchError(f"{path}: file not found") from None
    except (OSError, csv.Error, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{path}: not a readable CSV ({one_line(err)})") from None
    dups = duplicate_columns(header)
    if dups:
        named = "; ".join(" and ".join(repr(c) for c in cells) for cells in dups.values())
        raise FidBenchError(
            f"{path}: the header names a column more than once (case and spaces ignored): {named}; "
            "rename or remove the extra column"
        )
    frame.columns = [column_key(c) for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FidBenchError(
            f"{path}: missing column {missing[0]!r} (found: {', '.join(frame.columns) or 'none'})"
        )
    return frame
