"""Per-module mutation score from mutmut's result files (``mutants/**/*.py.meta``), as a markdown table.

Run after ``mutmut run`` (``make mutate`` does both); paste the table into docs/MUTATION.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ["killed", "survived", "timeout", "no tests", "not checked"]


def main() -> None:
    rows = []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        counts = Counter(status_by_exit_code[c] for c in codes.values())
        module = meta.relative_to("mutants").as_posix().removesuffix(".meta")
        checked = counts["killed"] + counts["survived"] + counts["timeout"]
        score = f"{100 * (counts['killed'] + counts['timeout']) / checked:.0f} %" if checked else "-"
        rows.append([module, str(len(codes)), *(str(counts[c]) for c in COLUMNS), score])
    print("| module | mutants | " + " | ".join(COLUMNS) + " | score |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
