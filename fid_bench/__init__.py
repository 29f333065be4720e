"""fid_bench: an experiment-tracking benchmark harness for fake image detection.

Label convention everywhere: 1 = generated (fake), 0 = real.

Layers, top to bottom (a module imports its own layer or the ones below; docs/ARCHITECTURE.md):
``cli`` and ``commands``, ``__main__``; ``search``, ``experiment``; ``predict``, ``submission``;
``tracking``; the tracks (``classical``, ``features``, ``finetune``); ``evaluation``; ``detector``;
``data``; the foundations (``errors``, ``config``, ``markdown``, ``evaluation.registry``,
``tracking.kinds``).
"""

__version__ = "0.1.0"
