"""What every ``fid-bench`` command shares: the one-line argument parser and the error handling.

Exit codes: 0 done, 1 a user error (``FidBenchError``, shown as one line), 2 bad arguments (argparse,
or an error whose ``exit_code`` is 2), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from fid_bench.errors import FidBenchError, one_line, storage_error
from fid_bench.tracking.store import DEFAULT_TRACKING_URI


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


Subcommands = Any  # argparse's private _SubParsersAction


def alpha_arg(text: str) -> float:
    """argparse type of a significance level: a number strictly between 0 and 1."""
    try:
        alpha = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < alpha < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return alpha


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """``--tracking-uri``, the same option and default for every command that reads the store."""
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI or {DEFAULT_TRACKING_URI})",
    )


def run_handler(
    handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, prog: str
) -> int:
    """Call a subcommand's handler; user errors become one line on stderr and an exit code."""
    try:
        return int(handler(args) or 0)
    except FidBenchError as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except OSError as err:
        storage = storage_error(err)  # a full disk or a read-only folder: one line too
        if storage is None:
            raise
        print(f"{prog}: error: {one_line(storage)}", file=sys.stderr)
        return 1


def run_standalone(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str] | None,
) -> int:
    """``python -m fid_bench.commands.<command>``: the command's own parser, with the CLI's one-line errors."""
    parser = OneLineParser(prog=prog, description=description)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad argument already reported on one line
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_handler(args.handler, args, prog)
