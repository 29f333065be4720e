"""One thin argparse module per ``fid-bench`` command: ``leaderboard``, ``compare``, ``predict``,
``promote``, ``audit`` (and the weights/export tools).

Each module has ``add_arguments(parser)`` and a ``run(args) -> int`` (most also ``NAME``, ``HELP``,
``DESCRIPTION`` and run standalone as ``python -m fid_bench.commands.<name>``); ``fid_bench.cli``
assembles them. A command turns arguments into calls of the library (``tracking``, ``predict``,
``audit``, ``data``, ...) and holds no logic of its own beyond checking that the arguments fit
together. ``common`` holds what every command shares: the one-line argument parser and the runner
that turns a ``FidBenchError`` into one line on stderr and an exit code (1 for a user error, 2 for
bad arguments, 130 for Ctrl-C).

May import: any fid_bench package. Imported by: ``fid_bench.cli`` only; nothing in the library
imports ``fid_bench.commands``.
"""
