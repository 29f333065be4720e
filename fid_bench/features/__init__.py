"""Frozen-encoder features: the Encoder contract (``encoders``: any ``fid_bench.backbones`` backbone
frozen, or a hand-made encoder such as ``spectrum``), the content-addressed cache and streaming
extraction (``extract.extract_features``).

Import the submodules directly; this package imports nothing heavy so that a job whose features
are all cached never imports torch.

May import: ``backbones``, ``data``, ``detector``, ``config`` and the foundations; never tracking,
jobs or commands.
"""
