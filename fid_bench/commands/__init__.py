"""The ``fid-bench`` subcommands, one thin module each: its argparse options (``add_arguments``),
a ``DESCRIPTION`` and a handler that turns parsed arguments into library calls and printed
results. ``fid_bench.cli`` assembles them into the command; nothing else imports this package.
"""
