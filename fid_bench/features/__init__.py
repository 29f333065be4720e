"""Frozen-encoder features: encoders, pretrained-weight resolution, the content-addressed cache and
streaming extraction (``extract.extract_features``).

Import the submodules directly; this package imports nothing heavy so that a job whose features
are all cached never imports torch.

May import: ``data``, ``detector``, ``config`` and the foundations; never tracking, jobs or commands.
"""
