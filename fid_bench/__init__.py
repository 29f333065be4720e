"""fid_bench: an experiment-tracking benchmark harness for fake image detection.

Label convention everywhere: 1 = generated (fake), 0 = real.

Layers, top to bottom (a module imports its own layer or the ones below; docs/ARCHITECTURE.md):
``cli`` and ``commands``, ``__main__``; ``jobs`` (experiment, ensemble, imported, search);
``predict``, ``submission``; ``tracking``; the tracks (``features_track``, ``finetune``) over
``features``; ``evaluation``; ``contract``; ``data``; the foundations (``errors``, ``config``,
``markdown``, ``evaluation.metric_registry``, ``tracking.kinds``).
"""

__version__ = "0.1.0"
