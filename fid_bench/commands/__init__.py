"""The ``fid-bench`` subcommands: one thin argparse module per command.

Each module offers ``register(commands)``, which adds its parser to the subcommand set and sets
``handler`` (a function of the parsed arguments returning an exit code); ``fid_bench.cli`` only
assembles them. The work itself lives in library modules, so nothing imports a command module.
"""
