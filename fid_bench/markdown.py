"""GitHub-flavoured Markdown tables, for every report that prints one (leaderboard, compare).

Imports nothing from fid_bench: any layer may use it.
"""

from __future__ import annotations

from collections.abc import Sequence


def cell(text: object) -> str:
    """One cell's text: a pipe, a backslash or a line break inside a value must not break the table."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(
    header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool] | None = None
) -> str:
    """The table as Markdown lines (no trailing newline); ``numeric`` columns are right-aligned."""
    align = numeric if numeric is not None else [False] * len(header)
    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if num else ":---" for num in align) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
