"""The frozen-encoder track: class balancing and classifiers fitted on cached feature matrices.

May import: ``features``, ``evaluation``, ``data``, ``detector`` and the foundations; never tracking,
jobs or commands.
"""
