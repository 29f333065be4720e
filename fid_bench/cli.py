"""``fid-bench``: tools around the benchmark (the benchmark itself runs as ``python -m fid_bench``).

This module only assembles the commands of ``fid_bench.commands``: each module there has a ``NAME``,
``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` (which sets ``handler``) and ``run(args) -> int``.
Handlers raise ``FidBenchError`` for anything the user can fix: it is printed as one line and the
exit code is the error's ``exit_code`` (1 by default, 2 for bad arguments; 130 after Ctrl-C).
``audit`` parses its own arguments (Hydra-style overrides), so ``main`` hands it its argv whole.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fid_bench import installed

installed.require("fid-bench")  # one line naming `make install`, not a ModuleNotFoundError

from fid_bench.commands import (  # noqa: E402
    audit_command,
    compare_command,
    ensemble_command,
    export_onnx_command,
    import_predictions_command,
    leaderboard_command,
    predict_command,
    promote_command,
    quantise_onnx_command,
    weights_command,
)
from fid_bench.commands.common import OneLineParser, Subcommands, run_handler  # noqa: E402

PROG = "fid-bench"
#: the commands with a parser of their own, in ``--help`` order (the audit is dispatched in ``main``)
COMMANDS = (
    leaderboard_command,
    compare_command,
    predict_command,
    promote_command,
    ensemble_command,
    import_predictions_command,
    weights_command,
    export_onnx_command,
    quantise_onnx_command,
)


def _audit(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "audit",
        help="audit a data set: duplicates, leaks, label conflicts, shortcuts",
        description="Audit a data set before training (see `fid-bench audit --help`).",
        add_help=False,  # the audit's own parser answers --help
    )
    parser.add_argument(
        "rest", nargs=argparse.REMAINDER
    )  # listed here; main() hands it to commands.audit_command


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Tools for the fid_bench fake image detection benchmark.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_arguments(
            commands.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
        )
    _audit(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        # argparse's REMAINDER drops a leading option such as --help: hand the audit its argv whole
        return audit_command.main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args, f"{PROG} {args.command}")


if __name__ == "__main__":
    sys.exit(main())
