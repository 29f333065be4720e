"""The frozen-encoder track: classifiers fitted on cached feature matrices (``detector.FeatureDetector``)."""
