"""``fid-bench import-predictions``: log another tool's scores as a run of kind ``imported``.

    fid-bench import-predictions --name published-ckpt scores.csv --like RUN_ID
    fid-bench import-predictions --name published-ckpt scores.csv data=folder data.root=/data/cifake

The file has ``id,score`` and optionally ``label``; the rows it is aligned with are those of an
existing run (``--like``) or of the data set the overrides configure, split as a job splits it.
The library is ``fid_bench.jobs.imported``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fid_bench.commands.common import add_tracking_uri, run_standalone
from fid_bench.errors import UsageError

NAME = "import-predictions"
PROG = "fid-bench import-predictions"
HELP = "log another tool's id,score CSV as a run scored on the benchmark's rows"
DESCRIPTION = (
    "Log the scores of a detector run elsewhere (a CSV with id,score and optionally label) as a run of "
    "kind 'imported', aligned with the validation and test rows of an existing run (--like RUN) or of "
    "the data set that Hydra-style overrides configure (e.g. 'data=folder data.root=/data/cifake'), "
    "split as a job splits it. It joins the leaderboard, compare and the paired tests; it holds no model."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench import-predictions`` (also ``python -m fid_bench.commands.import_predictions_command``)."""
    p.add_argument(
        "file", type=Path, metavar="FILE.csv", help="id,score[,label]; score = probability of 'generated'"
    )
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides naming the data set, e.g. data=folder data.root=DIR"
    )
    p.add_argument(
        "--name", required=True, help="the detector's name (run name and model column of the leaderboard)"
    )
    p.add_argument(
        "--like", metavar="RUN", help="align with the rows of this run (a run id, or 'best' of --experiment)"
    )
    p.add_argument(
        "--experiment",
        metavar="NAME",
        help="experiment of the new run (default: that of --like, else tracking.experiment of the config)",
    )
    p.add_argument("--metric", default="roc_auc", help="metric ranking --like best (default: roc_auc)")
    p.add_argument(
        "--require-all", action="store_true", help="refuse a file that does not score every reference row"
    )
    add_tracking_uri(p)
    p.set_defaults(handler=run)


def check_arguments(args: argparse.Namespace) -> None:
    if not args.name.strip():
        raise UsageError("--name is empty")
    if args.like and args.overrides:
        raise UsageError("give --like RUN or data overrides, not both")
    if not args.like and not args.overrides:
        raise UsageError(
            "say which rows the file scores: --like RUN, or data overrides such as data=folder data.root=DIR"
        )
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UsageError(f"{bad[0]!r} is not an override (key=value); give one FILE.csv")


def run(args: argparse.Namespace) -> int:
    """The command for parsed ``args``; its exit code."""
    from fid_bench.imported_scores import read_predictions_csv
    from fid_bench.jobs.imported import MISSING_IDS, config_reference, log_import, run_reference
    from fid_bench.tracking.run_queries import get_run, make_client, rank_runs, tracking_uri

    check_arguments(args)
    read_predictions_csv(args.file)  # a bad file is refused before the data set is read
    uri = tracking_uri(args.tracking_uri)
    if args.like:
        client = make_client(uri)
        if args.like == "best":
            like = rank_runs(client, args.experiment, args.metric)[1][0]
        else:
            like = get_run(client, args.like)
        reference = run_reference(client, like)
    else:
        from fid_bench.config import compose
        from fid_bench.tracking.store import connect

        reference = config_reference(compose(args.overrides), args.overrides)
        client = connect(uri)
    result = log_import(
        client, uri, args.file, args.name.strip(), reference, experiment=args.experiment,
        missing="error" if args.require_all else "report",
    )  # fmt: skip
    report, m = result.report, result.metrics
    print(f"{args.name.strip()}: {report.summary()}")
    n_test = int((report.missing["split"] == "test").sum())
    if n_test:
        print(f"{n_test} test row(s) have no score: their ids are in {MISSING_IDS} of the run")
    print(f"threshold {result.threshold:.4f}: {result.threshold_source}")
    interval = ""
    if "roc_auc_ci_low" in m:
        interval = f" [{m['roc_auc_ci_low']:.4f}, {m['roc_auc_ci_high']:.4f}]"
    print(
        f"logged imported run {result.run_id} in experiment {result.experiment!r} on the rows of "
        f"{reference.description}: roc_auc={m['roc_auc']:.4f}{interval} on {int(m['n_test'])} test rows"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.import_predictions_command``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
