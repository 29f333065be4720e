"""All 12 blocks of ``clip_vit_b16_int8`` (``model.layers=all``) against today's single output, side by side.

    .venv/bin/python benchmarks/layers_speed.py [--n 64] [--batch N] [--rounds 5] [--pool both]

Same file, same images, same process: the first ``n/2`` images of CIFAKE's test/REAL and test/FAKE
(read from ``../shared/data/cifake.tar.gz``, or ``--archive``), preprocessed once with the CLIP preprocessing. Two encoders:

``single``   ``OnnxEncoder(file=clip_vit_b16_int8)``: the ``image_embeds`` output (512-d), as today.
``blocks``   the same with ``layers=all`` and ``pool``: the derived file with the 12 block outputs
             added as graph outputs, one session run, each block pooled (12 x 2 x 768 values with
             ``both``).

``encode`` (normalisation, session runs in chunks of ``--batch``, by default
the encoder's own: one image per call for this file, see ``model.batch_size``; pooling) is timed on all ``n``
images, ``--rounds`` times, the two interleaved after one warm-up each; the table shows best and
median seconds and the ratio of medians (blocks / single). The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import onnx_speed  # noqa: E402
from benchmarks.onnx_speed import ARCHIVE, cifake_test_images  # noqa: E402


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument(
        "--batch", type=int, default=None, help="images per session call (default: the encoder's)"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pool", default="both")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--archive", type=Path, default=ARCHIVE)
    args = ap.parse_args()

    import numpy as np

    from fid_bench.data.decode import load_rgb
    from fid_bench.features.onnx import OnnxEncoder

    if not args.archive.exists():
        sys.exit(f"{args.archive} not found")
    onnx_speed.ARCHIVE = args.archive
    print(load())
    with tempfile.TemporaryDirectory() as tmp:
        paths = cifake_test_images(Path(tmp), args.n)
        single = OnnxEncoder(file="clip_vit_b16_int8", batch_size=args.batch, threads=args.threads)
        blocks = OnnxEncoder(
            file="clip_vit_b16_int8",
            batch_size=args.batch,
            threads=args.threads,
            layers="all",
            pool=args.pool,
        )
        for enc in (single, blocks):
            enc.prepare("cpu")
            enc.load()
        x = np.stack([single.transform(load_rgb(p)) for p in paths])
    times: dict[str, list[float]] = {"single": [], "blocks": []}
    dims = {}
    for name, enc in (("single", single), ("blocks", blocks)):
        dims[name] = enc.encode(x[: args.batch]).shape[1]  # warm-up
    for _ in range(args.rounds):
        for name, enc in (("single", single), ("blocks", blocks)):
            t0 = time.perf_counter()
            enc.encode(x)
            times[name].append(time.perf_counter() - t0)
    print(load())
    print(
        f"{args.n} images, batch {args.batch or 'the encoder default'}, {args.rounds} rounds, threads {args.threads or 'default'}"
    )
    print("| variant | dim | best s | median s | images/s (median) |")
    print("|---|---|---|---|---|")
    for name in ("single", "blocks"):
        med = statistics.median(times[name])
        print(f"| {name} | {dims[name]} | {min(times[name]):.2f} | {med:.2f} | {args.n / med:.1f} |")
    ratio = statistics.median(times["blocks"]) / statistics.median(times["single"])
    pairs = sorted(b / s for b, s in zip(times["blocks"], times["single"], strict=True))
    print(
        f"blocks / single, ratio of medians: {ratio:.3f} (per round: {', '.join(f'{r:.3f}' for r in pairs)})"
    )


if __name__ == "__main__":
    main()
