"""One thin argparse module per ``fid-bench`` command: ``leaderboard``, ``compare``, ``predict``.

Each module has ``NAME``, ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``
and runs standalone as ``python -m fid_bench.commands.<name>``; ``fid_bench.cli`` assembles them.
A command turns arguments into calls of the library (``tracking``, ``predict``, ``data``, ...) and
holds no logic of its own beyond checking that the arguments fit together.

May import: any fid_bench package. Imported by: ``fid_bench.cli`` only; nothing in the library
imports ``fid_bench.commands``.
"""
