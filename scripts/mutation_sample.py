"""A seeded random sample of mutant names, the same number from every mutated module.

The full mutation run takes hours on a 2-core CPU; a sample of each module gives every module a
score with an honest uncertainty in an afternoon. Needs the mutants generated first (any
``mutmut run``, even one that matches no mutant, generates them all); prints the names, one per
line, for ``mutmut run``. ``make mutate-sample`` does both and prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-module", type=int, default=20, help="mutants drawn from each module")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        raise SystemExit("no mutants/ folder: run `mutmut run 'none*'` first to generate the mutants")
    for meta in metas:
        names = sorted(json.loads(meta.read_text()).get("exit_code_by_key", {}))
        for name in rng.sample(names, min(args.per_module, len(names))):
            print(name)


if __name__ == "__main__":
    main()
