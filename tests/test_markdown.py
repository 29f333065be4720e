"""The one Markdown table renderer (leaderboard and compare)."""

from __future__ import annotations

import math

import pandas as pd

from fid_bench import markdown
from fid_bench.tracking.compare import table_markdown


def test_cells_never_break_the_table() -> None:
    text = markdown.table(["name", "auc"], [["a|b\\c\nd", "0.9000"]], [False, True])
    header, separator, row = text.splitlines()
    assert header == "| name | auc |"
    assert separator == "|:---|---:|"
    assert row == "| a\\|b\\\\c d | 0.9000 |"


def test_compare_table_formats_numbers_and_aligns_them() -> None:
    table = pd.DataFrame({"run_id": ["r1", "r|2"], "roc_auc": [0.91234, math.nan], "n_test": [10, 12]})
    lines = table_markdown(table).splitlines()
    assert lines == [
        "| run_id | roc_auc | n_test |",
        "|:---|---:|---:|",
        "| r1 | 0.9123 | 10 |",
        "| r\\|2 | - | 12 |",
    ]
