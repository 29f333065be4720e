"""``python -m fid_bench.leaderboard``: rank tracked runs (the same as ``fid-bench leaderboard``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

PROG = "python -m fid_bench.leaderboard"


def main(argv: Sequence[str] | None = None) -> int:
    from fid_bench.cli import OneLineParser, run_handler
    from fid_bench.tracking import leaderboard

    parser = OneLineParser(
        prog=PROG, description="Rank the runs of the MLflow tracking store by a logged metric."
    )
    leaderboard.add_arguments(parser)
    args = parser.parse_args(argv)
    return run_handler(args.handler, args, PROG)


if __name__ == "__main__":
    sys.exit(main())
