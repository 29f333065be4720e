"""``fid-bench compare``: one figure with the ROC and precision-recall curves of several runs.

    fid-bench compare RUN_ID RUN_ID ... [--out DIR]     (ids or their first 6+ characters)
    fid-bench compare --top 5 [--experiment NAME] [--metric roc_auc]
    fid-bench compare A B [--bootstrap 1000] [--alpha 0.05] [--seed 0] [--no-paired]

Writes ``compare.png`` plus the metric table (``compare.csv``, ``compare.md``) into the folder
``--out`` (by default a new folder under the local store's ``comparisons/``, or a temporary one:
never the working directory) and logs them to MLflow
(see ``fid_bench.tracking.compare`` for which run receives them). Exactly two runs also get the
paired report (``fid_bench.tracking.paired_runs``): A minus B on the test rows both scored, ROC-AUC by
DeLong's test, F1/accuracy/TPR@FPR by a paired bootstrap (``<stem>_paired.csv`` and ``.md``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fid_bench.commands.common import add_tracking_uri, alpha_arg, run_standalone
from fid_bench.errors import UsageError
from fid_bench.tracking.compare import PairedOptions, compare_runs
from fid_bench.tracking.run_queries import make_client, rank_runs, tracking_uri
from fid_bench.tracking.store import local_store_path

NAME = "compare"
#: the figure's name inside the output folder (the tables take its stem)
FIGURE = "compare.png"
PROG = "fid-bench compare"
HELP = "overlay the ROC and PR curves of several runs; test two runs against each other"
DESCRIPTION = (
    "Overlay the test ROC and precision-recall curves of runs and tabulate their metrics. "
    "For exactly two runs (A B, or --top 2) also a paired report on the test rows both scored, "
    "matched by id: A minus B in ROC-AUC with DeLong's test, and in F1, accuracy (each run at its "
    "own threshold) and TPR at FPR 1 %/5 % with a paired bootstrap; difference, interval, p-value. "
    "With more runs there is no paired report (the leaderboard marks the runs tied with its top "
    "one). Runs scored on different test rows, or cross-validated ones, are refused."
)


def _count_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench compare`` (also ``python -m fid_bench.commands.compare_command``)."""
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
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for compare.png and its tables (default: a new folder under the local tracking "
        "store's comparisons/, else a temporary folder; printed). A name ending in .png is the figure",
    )
    p.add_argument("--log-to", metavar="RUN_ID", help="run that receives the comparison artifacts")
    p.add_argument("--no-log", action="store_true", help="only write the files; log nothing to MLflow")
    paired = p.add_argument_group("paired report (exactly two runs: A is the first)")
    paired.add_argument(
        "--bootstrap",
        type=_count_arg,
        default=1000,
        metavar="N",
        help="paired bootstrap resamples for F1, accuracy and TPR@FPR (default: 1000; 0: DeLong only)",
    )
    paired.add_argument(
        "--alpha",
        type=alpha_arg,
        default=0.05,
        help="significance level; intervals are 1-alpha (default: 0.05)",
    )
    paired.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: 0)")
    paired.add_argument(
        "--no-paired", action="store_true", help="no paired report: only the curves and the metric table"
    )
    add_tracking_uri(p)
    p.set_defaults(handler=run)


def figure_path(out: Path | None, uri: str, run_ids: Sequence[str]) -> Path:
    """Where the figure goes: ``compare.png`` inside the folder ``--out`` (a ``.png`` name is the
    figure itself), by default a new folder beside a local store, never the working directory."""
    if out is not None:
        if out.suffix.lower() == ".png":
            return out
        out.mkdir(parents=True, exist_ok=True)
        return out / FIGURE
    import tempfile
    import time

    store = local_store_path(uri)
    if store is not None:
        base = (store.parent if uri.startswith("sqlite:") else store) / "comparisons"
        base.mkdir(parents=True, exist_ok=True)
        stem = "-".join(
            [time.strftime("%Y%m%d-%H%M%S"), *("".join(c for c in r if c.isalnum())[:8] for r in run_ids[:4])]
        )
        folder = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=base))
    else:
        folder = Path(tempfile.mkdtemp(prefix="fid_bench-compare-"))
    return folder / FIGURE


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
    paired = None
    if len(run_ids) == 2 and not args.no_paired:
        paired = PairedOptions(n_boot=args.bootstrap, alpha=args.alpha, seed=args.seed)
    result = compare_runs(
        run_ids, figure_path(args.out, uri, run_ids), args.log_to, tracking_uri=uri,
        log_artifacts=not args.no_log, paired=paired,
    )  # fmt: skip
    print(result.table_md.read_text(), end="")
    if result.paired_md is not None:
        print()
        print(result.paired_md.read_text(), end="")
    elif len(run_ids) > 2 and not args.no_paired:
        print("(no paired report: it compares exactly two runs)")
    folder = result.figure.parent
    print(f"wrote {', '.join(f.name for f in result.files)} into {folder}")
    if result.logged_to:
        print(f"logged to run {result.logged_to} under comparison/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.compare_command``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
