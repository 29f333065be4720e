"""Fine-tuning track: a ``fid_bench.backbones`` backbone plus a binary head, trained end to end with
PyTorch Lightning.

``detector.FinetuneDetector`` is what ``classifier=finetune`` builds. Nothing here imports torch or
Lightning at package import time, so the features track never pays for them.

May import: ``features`` (weights), ``balance``, ``evaluation``, ``data``, ``contract``
and the foundations; never tracking, jobs or commands.
"""
