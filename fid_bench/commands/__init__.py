"""The ``fid-bench`` commands: one thin argparse module per command, over the library.

Each module parses its command line, calls library functions and prints; what the command does
lives in the library (``fid_bench.audit``, ``fid_bench.tracking`` ...). ``base`` holds what every
command shares: the one-line argument parser and the runner that turns a ``FidBenchError`` into
one line on stderr and an exit code (1 for a user error, 2 for bad arguments).

Commands import the library; nothing in the library imports ``commands``. ``fid_bench.cli``
assembles the commands into ``fid-bench``.
"""
