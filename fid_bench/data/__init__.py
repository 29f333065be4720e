"""Data layer: readers turn a data set on disk into a samples table (see ``samples``).

Owns: decoding (``decode``), the readers (``readers``: kaggle, folder, demo), the demo generator,
folds (``splits``), file checks (``validation``), the images to predict (``inputs``), and for now the
audit (``audit``, moving to its own package above this one).

May import: ``fid_bench.errors``, ``fid_bench.config`` and the other foundations, and itself; nothing
above (no detector, evaluation, tracking, jobs or commands).
"""
