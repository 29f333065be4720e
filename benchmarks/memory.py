"""Peak memory of feature extraction as the data grows (requirement: flat, whatever the image count).

    .venv/bin/python benchmarks/memory.py --root /tmp/cifake --n 10000 120000 [--model spectrum]

``--root`` is an unpacked CIFAKE (``tar -xzf ../shared/data/cifake.tar.gz -C DIR``); the first ``n``
images of train/REAL, train/FAKE, test/REAL, test/FAKE (in that order, half real and half fake as
long as the train split lasts). For each ``n``, a fresh Python process runs ``extract_features``
(the harness's streaming extraction: 2 DataLoader workers, batches of 64, chunked cache writes) into
an empty cache and reports the main process's peak RSS (``ru_maxrss``), the peak PSS of the process
tree (main + workers, sampled every 50 ms; see benchmarks/extraction.py) and the size of the
returned feature matrix, the one thing that has to grow with ``n``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def image_list(root: Path, n: int) -> list[str]:
    folders = [root / s / c for s in ("train", "test") for c in ("REAL", "FAKE")]
    names = {f: sorted(os.listdir(f)) for f in folders}
    out: list[str] = []
    for split in ("train", "test"):
        real, fake = names[root / split / "REAL"], names[root / split / "FAKE"]
        for i in range(max(len(real), len(fake))):
            for folder, files in ((root / split / "REAL", real), (root / split / "FAKE", fake)):
                if i < len(files) and len(out) < n:
                    out.append(str(folder / files[i]))
    return out


def measure(root: Path, n: int, model: str) -> dict:
    from extraction import PeakMemory

    from fid_bench.features.encoders import build_encoder
    from fid_bench.features.extract import extract_features
    from fid_bench.features.spectrum import SpectrumEncoder

    paths = image_list(root, n)
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    encoder = SpectrumEncoder() if model == "spectrum" else None
    if encoder is None:
        from fid_bench.config import compose

        encoder = build_encoder(compose([f"model={model}"]).model.backbone)
    with tempfile.TemporaryDirectory() as cache, PeakMemory() as peak:
        t0 = time.perf_counter()
        feats, stats = extract_features(
            encoder, paths, sha1s, Path(cache), batch_size=64, num_workers=2, device="cpu"
        )
        seconds = time.perf_counter() - t0
    return {
        "n": len(paths),
        "seconds": round(seconds, 1),
        "images_per_s": round(len(paths) / seconds, 1),
        "rss_before_extraction_mb": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_pss_tree_mb": round(peak.peak / 2**20),
        "feature_matrix_mb": round(feats.nbytes / 2**20, 1),
        "n_extracted": int(stats["n_extracted"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 120_000])
    ap.add_argument("--model", default="spectrum")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.root, args.one, args.model)))
        return
    print("load average", os.getloadavg())
    print("| images | seconds | images/s | peak RSS MB (main) | peak PSS MB (tree) | feature matrix MB |")
    print("|---|---|---|---|---|---|")
    for n in args.n:
        cmd = [sys.executable, __file__, "--root", str(args.root), "--model", args.model, "--one", str(n)]
        r = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
        print(
            f"| {r['n']:,} | {r['seconds']} | {r['images_per_s']} | {r['peak_rss_mb']} "
            f"(before extraction {r['rss_before_extraction_mb']}) | {r['peak_pss_tree_mb']} | {r['feature_matrix_mb']} |",
            flush=True,
        )
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
