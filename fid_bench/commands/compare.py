"""``fid-bench compare``: one figure with the ROC and precision-recall curves of several runs.

    fid-bench compare RUN_ID RUN_ID ... [--out compare.png]
    fid-bench compare --top 5 [--experiment NAME] [--metric roc_auc]

Writes the PNG plus the metric table (``.csv`` and ``.md`` next to it) and logs them to MLflow
(see ``fid_bench.tracking.compare`` for which run receives them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fid_bench.commands.common import add_tracking_uri, run_standalone
from fid_bench.errors import UsageError
from fid_bench.tracking.compare import compare_runs
from fid_bench.tracking.runs import make_client, rank_runs, tracking_uri

NAME = "compare"
PROG = "fid-bench compare"
HELP = "overlay the ROC and PR curves of several runs"
DESCRIPTION = "Overlay the test ROC and precision-recall curves of runs and tabulate their metrics."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench compare`` (also ``python -m fid_bench.commands.compare``)."""
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to compare (at least one)")
    p.add_argument(
        "--top", type=int, metavar="N", help="compare the N best finished runs by --metric instead"
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="experiment of --top (default: the only one with runs)"
    )
    p.add_argument(
        "--metric", default="roc_auc", help="metric ranking --top (default: roc_auc; losses lowest first)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("compare.png"), help="PNG to write (default: compare.png)"
    )
    p.add_argument("--log-to", metavar="RUN_ID", help="run that receives the comparison artifacts")
    p.add_argument("--no-log", action="store_true", help="only write the files; log nothing to MLflow")
    add_tracking_uri(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The command for parsed ``args``; its exit code."""
    if args.top is not None and args.run_ids:
        raise UsageError("give RUN_IDs or --top N, not both")
    if args.top is None and not args.run_ids:
        raise UsageError("give at least one RUN_ID (or --top N)")
    if args.top is not None and args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.no_log and args.log_to:
        raise UsageError("--no-log and --log-to contradict each other")

    uri = tracking_uri(args.tracking_uri)
    run_ids = args.run_ids
    if args.top is not None:
        _, ranked = rank_runs(make_client(uri), args.experiment, args.metric)
        run_ids = [r.info.run_id for r in ranked[: args.top]]
    result = compare_runs(run_ids, args.out, args.log_to, tracking_uri=uri, log_artifacts=not args.no_log)
    print(result.table_md.read_text(), end="")
    print(f"wrote {result.figure}, {result.table_csv} and {result.table_md}")
    if result.logged_to:
        print(f"logged to run {result.logged_to} under comparison/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.compare``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
