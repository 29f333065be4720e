"""Frozen-encoder features: the Encoder contract (``encoders``: any ``fid_bench.backbones`` backbone
frozen, or a hand-made encoder such as ``spectrum``), the content-addressed cache and streaming
extraction (``extract.extract_features``).

May import ``fid_bench.backbones``, ``fid_bench.data`` and ``fid_bench.errors``. Import the
submodules directly; this package imports nothing heavy so that a job whose features are all cached
never imports torch.
"""
