"""The features track (frozen encoder): classifiers fitted on cached feature matrices (``detector.FeatureDetector``).

May import: ``features``, ``backbones``, ``balance``, ``evaluation``, ``data``, ``detector`` and the
foundations; never tracking, jobs or commands.
"""
