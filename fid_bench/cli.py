"""``fid-bench``: tools around the benchmark (the benchmark itself runs as ``python -m fid_bench``).

Each subcommand is one function below that adds its parser to ``commands`` and sets
``handler`` (a function of the parsed args returning an exit code); list it in ``COMMANDS``.
Handlers raise ``FidBenchError`` for anything the user can fix: it is printed as one line and
the exit code is the error's ``exit_code`` (1 by default, 2 for bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

PROG = "fid-bench"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


Subcommands = Any  # argparse's private _SubParsersAction


def _leaderboard(commands: Subcommands) -> None:
    from fid_bench.tracking import leaderboard

    parser = commands.add_parser(
        "leaderboard",
        help="rank tracked runs by a metric",
        description="Rank the runs of the MLflow tracking store by a logged metric "
        "(parent runs of multiruns are left out).",
    )
    leaderboard.add_arguments(parser)


def _compare(commands: Subcommands) -> None:
    from fid_bench import compare

    parser = commands.add_parser(
        "compare",
        help="overlay the ROC and PR curves of several runs",
        description=compare.DESCRIPTION,
    )
    compare.add_arguments(parser)


def _predict(commands: Subcommands) -> None:
    from fid_bench import predict

    parser = commands.add_parser(
        "predict",
        help="score images (or write a Kaggle submission) with a logged run's model",
        description=predict.DESCRIPTION,
    )
    predict.add_arguments(parser)


def _audit(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "audit",
        help="audit a data set: duplicates, leaks, label conflicts, shortcuts",
        description="Audit a data set before training (see `fid-bench audit --help`).",
        add_help=False,  # the audit's own parser answers --help
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER)  # listed here; main() dispatches it


def _weights(commands: Subcommands) -> None:
    from fid_bench.commands import weights

    weights.register(commands)


def _export_onnx(commands: Subcommands) -> None:
    from fid_bench.commands import export_onnx

    export_onnx.register(commands)


COMMANDS: list[Callable[[Subcommands], None]] = [
    _leaderboard,
    _compare,
    _predict,
    _audit,
    _weights,
    _export_onnx,
]


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Tools for the fid_bench fake image detection benchmark.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def run_handler(
    handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, prog: str
) -> int:
    """Call a subcommand's handler; user errors become one line on stderr and an exit code."""
    from fid_bench.errors import FidBenchError

    try:
        return int(handler(args) or 0)
    except FidBenchError as err:
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0


def run_standalone(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str] | None,
) -> int:
    """``python -m fid_bench.<command>``: the subcommand's own parser, with the CLI's one-line errors."""
    import logging

    parser = OneLineParser(prog=prog, description=description)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad argument already reported on one line
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_handler(args.handler, args, prog)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        # argparse's REMAINDER drops a leading option such as --help: hand the audit its argv whole
        from fid_bench.data import audit

        return audit.main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args, f"{PROG} {args.command}")


if __name__ == "__main__":
    sys.exit(main())
