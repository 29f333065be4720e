"""Data layer: readers turn a data set on disk into a samples table (see ``samples``)."""
