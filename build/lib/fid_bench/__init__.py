"""fid_bench: an experiment-tracking benchmark harness for fake image detection.

Label convention everywhere: 1 = generated (fake), 0 = real.
"""

__version__ = "0.1.0"
