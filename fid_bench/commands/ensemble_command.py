"""``fid-bench ensemble``: combine finished runs into a new run of kind ``ensemble``.

    fid-bench ensemble RUN_ID RUN_ID --method stack --experiment cifake
    fid-bench ensemble best RUN_ID --method mean --name clip+spectrum

The library is ``fid_bench.jobs.ensemble`` (members, scores, the logged run and its model).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fid_bench.commands.common import add_tracking_uri, run_standalone
from fid_bench.ensemble_scores import METHODS
from fid_bench.errors import UsageError

NAME = "ensemble"
PROG = "fid-bench ensemble"
HELP = "combine finished runs (mean, rank or stacking) into a new run with its own model"
DESCRIPTION = (
    "Combine the scores of finished job or ensemble runs on their shared test rows into a new run of "
    "kind 'ensemble': mean of the scores, mean of their ranks among each member's validation scores, "
    "or a logistic regression stacked on the members' validation scores (never on test labels). "
    "The run logs the same metrics, intervals and plots as a job, and a model that runs its members."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench ensemble`` (also ``python -m fid_bench.commands.ensemble_command``)."""
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="member run ids, or 'best' (the best run of --experiment by --metric)",
    )
    p.add_argument("--method", required=True, choices=METHODS, help="how the members' scores are combined")
    p.add_argument("--name", help="run name (default: ensemble-METHOD-N)")
    p.add_argument(
        "--experiment",
        metavar="NAME",
        help="experiment of 'best' and of the new run (default: the members' experiment)",
    )
    p.add_argument("--metric", default="roc_auc", help="metric ranking 'best' (default: roc_auc)")
    add_tracking_uri(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The command for parsed ``args``; its exit code."""
    from fid_bench.jobs.ensemble import log_ensemble
    from fid_bench.tracking.run_queries import make_client, resolve_run, tracking_uri

    if len(args.runs) < 2:
        raise UsageError("an ensemble needs at least two RUNs")
    if args.name is not None and not args.name.strip():
        raise UsageError("--name is empty")
    uri = tracking_uri(args.tracking_uri)
    client = make_client(uri)
    members = [
        # --experiment is also where the new run goes: members given by id may come from elsewhere
        resolve_run(client, spec, experiment=args.experiment, metric=args.metric, scoped=False)
        for spec in args.runs
    ]
    result = log_ensemble(client, uri, members, args.method, name=args.name, experiment=args.experiment)
    m = result.metrics
    interval = ""
    if "roc_auc_ci_low" in m:
        interval = f" [{m['roc_auc_ci_low']:.4f}, {m['roc_auc_ci_high']:.4f}]"
    print(
        f"logged ensemble run {result.run_id} ({args.method} of {len(result.members)} runs) in experiment "
        f"{result.experiment!r}: roc_auc={m['roc_auc']:.4f}{interval}, threshold={m['threshold']:.4f} "
        f"({result.threshold_source})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.ensemble_command``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
