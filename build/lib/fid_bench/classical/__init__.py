"""The frozen-encoder track: class balancing and classifiers fitted on cached feature matrices."""
