"""CLIP ViT-B/16 image tower on the CPU: torch fp32 eager vs ONNX Runtime fp32 vs ONNX Runtime int8,
and the harness's extraction vs the bare int8 session.

    .venv/bin/python benchmarks/onnx_speed.py [--n 128] [--batch 32] [--threads 2] [--rounds 3]

Same architecture and the same images for every variant: the first ``n/2`` of CIFAKE's test/REAL and
test/FAKE (from ``../shared/data/cifake.tar.gz``, member by member into a temporary folder), 32 px
upscaled to 224 px and normalised once with the CLIP preprocessing (``model=clip_vit_b16_int8``'s).

``torch fp32``   open_clip ``ViT-B-16`` image tower, eager, ``torch.inference_mode``, ``--threads``.
``onnx fp32``    that same torch tower exported by ``fid_bench.features.onnx_export`` (checked against
                 torch), under ONNX Runtime. Both use random weights (``pretrained=false``): hub
                 weights cannot be downloaded here and speed does not depend on the weights' values.
``onnx int8``    the real ``clip_vit_b16_int8`` file (OpenAI weights, dynamic int8), fetched into the
                 weights cache when absent.
``harness``      ``extract_features`` with ``model=clip_vit_b16_int8`` into an empty cache, from the
                 JPEG files: DataLoader workers (``--workers``) decode and preprocess, the main
                 process runs the session; ``extract_images_per_s``. Compared with ``onnx int8``
                 on the same images already preprocessed.

Each variant runs ``--rounds`` times, interleaved, in this one process; the table shows the best and
median images/s and the ratios of medians. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifake.tar.gz"
sys.path.insert(0, str(REPO))


def cifake_test_images(out: Path, n: int) -> list[str]:
    want = {"test/REAL": n // 2, "test/FAKE": n - n // 2}
    paths: list[str] = []
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0].removeprefix("./")
            if member.isfile() and want.get(folder, 0) > 0:
                want[folder] -= 1
                dest = out / folder / Path(member.name).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(member).read())
                paths.append(str(dest))
            if not any(want.values()):
                break
    return paths


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=128, help="images (half real, half fake)")
    ap.add_argument("--batch", type=int, default=32, help="images per forward / session call")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the harness")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--int8-only", action="store_true", help="only the int8 session and the harness (e.g. on more images)"
    )
    ap.add_argument(
        "--fp32-file",
        default=str(Path(tempfile.gettempdir()) / "fid_bench_vit_b16_random.onnx"),
        help="the exported fp32 file (made when absent, reused afterwards)",
    )
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from fid_bench.backbones import onnx_files
    from fid_bench.features.extract import extract_features
    from fid_bench.features.onnx import OnnxEncoder

    print(load(), "(start)", flush=True)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="fid_bench_onnx_bench_"))
    paths = cifake_test_images(tmp / "img", args.n)
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]

    # the bare session takes the normalised float tensors (the harness's own encoder fuses normalisation)
    int8 = OnnxEncoder(
        file="clip_vit_b16_int8", threads=args.threads, batch_size=args.batch, fuse_normalise=False
    )
    onnx_files.ensure("clip_vit_b16_int8", allow_fetch=True)
    int8.prepare("cpu")
    int8.load()
    pixels = int8.normalise(np.stack([int8.transform(Image.open(p)) for p in paths]))  # [n, 3, 224, 224]

    def session_run(enc: OnnxEncoder) -> float:
        t0 = time.perf_counter()
        for i in range(0, len(pixels), args.batch):
            enc.run(pixels[i : i + args.batch])
        return len(pixels) / (time.perf_counter() - t0)

    def harness_run(r: int) -> float:
        enc = OnnxEncoder(file="clip_vit_b16_int8", threads=args.threads, batch_size=args.batch)
        _, stats = extract_features(
            enc,
            paths,
            sha1s,
            tmp / f"cache{r}",
            batch_size=args.batch,
            num_workers=args.workers,
            device="cpu",
        )
        return stats["extract_images_per_s"]

    variants = {"onnx int8 (clip_vit_b16_int8), bare session": lambda: session_run(int8)}
    if not args.int8_only:
        variants = {**torch_variants(args, pixels, session_run), **variants}
    results: dict[str, list[float]] = {k: [] for k in [*variants, "harness extraction (clip_vit_b16_int8)"]}
    for name, fn in variants.items():
        if name.startswith("onnx"):
            fn()  # warm-up: first-run allocations (torch warms up in round 1)
    for r in range(args.rounds):
        for name, fn in variants.items():
            results[name].append(fn())
            print(f"round {r + 1}: {name}: {results[name][-1]:.1f} images/s ({load()})", flush=True)
        results["harness extraction (clip_vit_b16_int8)"].append(harness_run(r))
        print(
            f"round {r + 1}: harness: {results['harness extraction (clip_vit_b16_int8)'][-1]:.1f} images/s",
            flush=True,
        )

    med = {k: statistics.median(v) for k, v in results.items()}
    first = med[next(iter(results))]
    bare = med["onnx int8 (clip_vit_b16_int8), bare session"]
    print(
        f"\n{args.n} CIFAKE images, batch {args.batch}, {args.threads} threads, {args.rounds} rounds; {load()} (end)"
    )
    print(f"| variant | best images/s | median images/s | vs {next(iter(results))} |")
    print("|---|---|---|---|")
    for name, vals in results.items():
        print(f"| {name} | {max(vals):.1f} | {med[name]:.1f} | {med[name] / first:.2f}x |")
    print(
        f"harness / bare int8 session (medians): {med['harness extraction (clip_vit_b16_int8)'] / bare:.2f}"
    )


def torch_variants(args: argparse.Namespace, pixels, session_run) -> dict:
    """torch fp32 eager and the fp32 ONNX file exported from it (made once, then reused)."""
    import torch

    from fid_bench.backbones.open_clip import OpenClipBackbone
    from fid_bench.features.encoders import FrozenEncoder
    from fid_bench.features.onnx import OnnxEncoder
    from fid_bench.features.onnx_export import export_encoder

    tower = FrozenEncoder(OpenClipBackbone("ViT-B-16", pretrained=False))
    tower.prepare("cpu")
    tower.load()
    if not Path(args.fp32_file).is_file():
        t0 = time.perf_counter()
        report = export_encoder(tower, args.fp32_file, batch=4)
        print(
            f"exported {args.fp32_file} in {time.perf_counter() - t0:.0f} s; {report.lines()[1]}", flush=True
        )
    fp32 = OnnxEncoder(path=args.fp32_file, threads=args.threads, batch_size=args.batch, fuse_normalise=False)
    fp32.prepare("cpu")
    fp32.load()
    model = tower._model

    def torch_run() -> float:
        x = torch.from_numpy(pixels)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(x), args.batch):
                model(x[i : i + args.batch])
        return len(x) / (time.perf_counter() - t0)

    return {
        "torch fp32 eager (open_clip ViT-B-16)": torch_run,
        "onnx fp32 (exported from it)": lambda: session_run(fp32),
    }


if __name__ == "__main__":
    main()
