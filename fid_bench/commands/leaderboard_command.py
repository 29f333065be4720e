"""``fid-bench leaderboard`` (also ``python -m fid_bench.commands.leaderboard_command``): rank tracked runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fid_bench.commands.common import add_tracking_uri, alpha_arg, run_standalone
from fid_bench.tracking.leaderboard import FORMATS, STATUSES, Query, add_top_marks, leaderboard, render
from fid_bench.tracking.run_queries import default_tracking_uri, open_store

NAME = "leaderboard"
PROG = "fid-bench leaderboard"
HELP = "rank tracked runs by a metric"
DESCRIPTION = (
    "Rank the runs of the MLflow tracking store by a logged metric (parent runs of multiruns are left out). "
    "The ~top column marks the shown runs not significantly different in ROC-AUC from the top one "
    "(DeLong's test against it, Holm-adjusted over the shown runs) on the same test rows, read from "
    "their predictions.csv: '~' tied, blank significantly worse, 'n/a' scored on other rows, "
    "cross-validated or without predictions. Whatever --metric ranks by, the test is on ROC-AUC and "
    "the top is the run with the highest ROC-AUC among the shown runs (the footer says so when it is "
    "not the first row)."
)


def _filter_arg(text: str) -> tuple[str, list[str]]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), [v.strip() for v in value.split(",")]


def _top_arg(text: str) -> int:
    try:
        top = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if top < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 shows every run)")
    return top


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench leaderboard`` (also ``python -m fid_bench.commands.leaderboard_command``)."""
    parser.add_argument(
        "--experiment",
        "-e",
        metavar="NAME",
        help="experiment to rank (default: every experiment, one table each)",
    )
    parser.add_argument(
        "--metric", "-m", default="roc_auc", help="logged metric to sort by (default: roc_auc)"
    )
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--ascending",
        action="store_const",
        const=True,
        help="smallest first (default: the metric's own direction: losses smallest first, scores largest)",
    )
    order.add_argument(
        "--descending", dest="ascending", action="store_const", const=False, help="largest first"
    )
    parser.add_argument(
        "--top", "-n", type=_top_arg, default=10, metavar="N", help="runs per table (default: 10; 0 = all)"
    )
    parser.add_argument(
        "--format", "-f", dest="fmt", choices=FORMATS, default="table", help="output format (default: table)"
    )
    add_tracking_uri(parser)
    parser.add_argument(
        "--filter",
        dest="filters",
        type=_filter_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose tag KEY (or params.KEY) equals VALUE; VALUE may list alternatives "
        "a,b; repeat for several keys (e.g. --filter model=resnet50 --filter balance=none)",
    )
    parser.add_argument(
        "--status",
        type=str.upper,
        choices=STATUSES,
        default="FINISHED",
        help="run status to show (default: FINISHED; ALL shows every status)",
    )
    parser.add_argument("--parent", metavar="RUN_ID", help="only the child runs of this multirun parent run")
    parser.add_argument(
        "--alpha",
        type=alpha_arg,
        default=0.05,
        help="significance level of the ~top column (default: 0.05)",
    )
    parser.add_argument(
        "--no-paired",
        action="store_true",
        help="no ~top column: skip reading the shown runs' predictions.csv",
    )
    parser.set_defaults(handler=run)


def query_from_args(args: argparse.Namespace) -> Query:
    filters: dict[str, list[str]] = {}
    for key, values in args.filters:
        # a key given twice narrows to values allowed by both
        filters[key] = [v for v in filters[key] if v in values] if key in filters else values
    return Query(
        experiment=args.experiment,
        metric=args.metric,
        top=args.top,
        filters=filters,
        status=args.status,
        parent=args.parent,
        ascending=args.ascending,
    )


def run(args: argparse.Namespace) -> int:
    """The command for parsed ``args``; its exit code."""
    query = query_from_args(args)
    client = open_store(args.tracking_uri or default_tracking_uri())
    boards = leaderboard(client, query)
    if not args.no_paired:
        add_top_marks(client, boards, args.alpha)
    text = render(boards, args.fmt, headings=query.experiment is None, show_status=query.status != "FINISHED")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.leaderboard_command``; returns the exit code (2 for bad arguments)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
