"""Feature extraction speed and memory: the harness versus a plain notebook loop, on the same images.

    .venv/bin/python benchmarks/extraction.py [--n 2000] [--model spectrum|test_resnet|resnet50|...]
                                              [--batch-size 64] [--num-workers 2] [--auc-test 0]

Images: the first ``n/2`` of CIFAKE's train/FAKE and train/REAL, extracted from
``../shared/data/cifake.tar.gz`` into a temporary folder when the archive is there; otherwise the
offline demo generator (``fid_bench.data.demo``). ``--auc-test N`` (spectrum) also extracts
``N/2`` + ``N/2`` CIFAKE test images and reports the ROC-AUC of a standardised logistic regression
trained on the ``n`` training images' features.

Each variant runs in a fresh Python process, on the same files:

``notebook``      for each path: ``PIL.Image.open(p).convert("RGB")``, the model's transform,
                  ``unsqueeze(0)``, forward under ``torch.no_grad()``, append; then stack. For
                  ``spectrum``: its transform (tiles), a batch of one, ``encode``, append.
``notebook, 1 thread``  (torch models) the same loop after ``torch.set_num_threads(1)``: separates
                  what batching buys from what oversubscribed intra-op threads cost on busy cores.
``harness cold``  ``extract_features`` into an empty cache (DataLoader workers, batches, chunked
                  cache writes).
``harness warm``  ``extract_features`` again on the now full cache, in a new process.

Timing: wall time from "paths known, libraries imported" to "feature matrix in hand", so it
includes building the model for both cold variants; the warm run imports nothing up front, to
show what a cached job pays. timm models are built with ``pretrained=False`` and the same seed
in both variants: speed does not depend on the weights, and the two feature matrices can be
compared (the table reports their largest difference).

Memory, measured inside each process: ``peak RSS`` is the process's own high-water mark
(``ru_maxrss``); ``peak PSS (tree)`` samples the proportional set size of the process plus its
children every 50 ms. PSS splits pages shared between the main process and its forked
DataLoader workers instead of counting them once per process, so the tree figure is the fair
total for the harness, whose workers would otherwise look free (``ru_maxrss`` of the main
process ignores them) or be counted several times (a plain RSS sum).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifake.tar.gz"
sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- images
def cifake_images(out: Path, n_train: int, n_test: int) -> tuple[list[str], list[int], list[str], list[int]]:
    """The first images of each class folder, extracted member by member (never the whole archive)."""
    want = {"train/FAKE": n_train // 2, "train/REAL": n_train - n_train // 2}
    if n_test:
        want.update({"test/FAKE": n_test // 2, "test/REAL": n_test - n_test // 2})
    found: dict[str, list[str]] = {k: [] for k in want}
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            folder = member.name.rsplit("/", 1)[0]
            if member.isfile() and folder in want and len(found[folder]) < want[folder]:
                tar.extract(member, out, filter="data")
                found[folder].append(str(out / member.name))
                if all(len(found[k]) == want[k] for k in want):
                    break

    def split(name: str) -> tuple[list[str], list[int]]:
        fake, real = found.get(f"{name}/FAKE", []), found.get(f"{name}/REAL", [])
        return fake + real, [1] * len(fake) + [0] * len(real)

    return (*split("train"), *split("test"))


def demo_images(out: Path, n: int) -> tuple[list[str], list[int]]:
    import pandas as pd

    from fid_bench.data.demo import ensure_demo

    root = ensure_demo(out / "demo", n_real=n - n // 2, n_fake=n // 2, n_predict=0, size=64)
    table = pd.read_csv(root / "train.csv")
    return [str(root / "images" / f"{i}.png") for i in table["id"]], table["target"].astype(int).tolist()


# --------------------------------------------------------------------------- one measured variant
class PeakMemory:
    """Peak PSS of this process and its children, sampled on a thread (see the module docstring)."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except Exception:  # noqa: BLE001 - a worker may exit between listing and reading
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, self._sample())
        self._stop.set()
        self._thread.join()


def make_encoder(model: str, image_size: int | None):
    from fid_bench.backbones.timm import TimmBackbone
    from fid_bench.features.encoders import FrozenEncoder
    from fid_bench.features.spectrum import SpectrumEncoder

    if model == "spectrum":
        return SpectrumEncoder(image_size=image_size)
    return FrozenEncoder(TimmBackbone(model, pretrained=False, image_size=image_size), init_seed=0)


def run_variant(args: argparse.Namespace) -> None:
    import resource

    job = json.loads(Path(args.job).read_text())
    paths, sha1s, model = job["paths"], job["sha1s"], job["model"]
    import numpy as np

    # imports are paid before the clock starts; a notebook computing spectra never needs torch
    if args.variant == "cold" or (args.variant.startswith("notebook") and model != "spectrum"):
        import torch
    if args.variant != "warm" and model != "spectrum":
        import timm  # noqa: F401
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if args.variant in ("notebook", "notebook1"):
            if args.variant == "notebook1":
                torch.set_num_threads(1)
            feats = notebook_loop(paths, model, job["image_size"])
        else:
            from fid_bench.features.extract import extract_features

            enc = make_encoder(model, job["image_size"])
            feats, stats = extract_features(
                enc,
                paths,
                sha1s,
                Path(job["cache"]),
                batch_size=job["batch_size"],
                num_workers=job["num_workers"],
                device="cpu",
            )
        seconds = time.perf_counter() - t0
    np.save(job["out"] + f".{args.variant}.npy", feats)
    result = {
        "variant": args.variant,
        "seconds": seconds,
        "images_per_s": len(paths) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_start / 1024,
        "peak_pss_tree_mb": mem.peak / 2**20,
        "torch_imported": "torch" in sys.modules,
        "dim": int(feats.shape[1]),
    }
    if not args.variant.startswith("notebook"):
        result["n_extracted"] = stats["n_extracted"]
    print(json.dumps(result))


def notebook_loop(paths: list[str], model_name: str, image_size: int | None):
    """What a notebook does: one image at a time, nothing cached, nothing in parallel."""
    import numpy as np
    from PIL import Image

    if model_name == "spectrum":
        from fid_bench.features.spectrum import SpectrumEncoder

        enc = SpectrumEncoder(image_size=image_size)
        feats = []
        for p in paths:
            x = enc.transform(Image.open(p).convert("RGB"))[None]  # tiles, as a batch of one
            feats.append(enc.encode(x))
        return np.concatenate(feats)
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)  # the harness builds random networks with seed 0: same weights, comparable features
    model = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    args = {"input_size": (3, image_size, image_size)} if image_size else {}
    transform = create_transform(**resolve_data_config(args, model=model), is_training=False)
    feats = []
    for p in paths:
        x = transform(Image.open(p).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            feats.append(model(x).numpy())
    return np.concatenate(feats)


# --------------------------------------------------------------------------- driver
def spawn(variant: str, job_file: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__, "--variant", variant, "--job", str(job_file)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spectrum_auc(train_feats, train_y, test_paths, test_y, job: dict, workdir: Path) -> float:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fid_bench.features.extract import extract_features

    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in test_paths]
    test_feats, _ = extract_features(
        make_encoder("spectrum", job["image_size"]),
        test_paths,
        sha1s,
        workdir / "cache",
        batch_size=job["batch_size"],
        num_workers=job["num_workers"],
        device="cpu",
    )
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    clf.fit(train_feats, np.asarray(train_y))
    return float(roc_auc_score(np.asarray(test_y), clf.predict_proba(test_feats)[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images to extract (half fake, half real)")
    parser.add_argument(
        "--model", default="spectrum", help="spectrum, or a timm model name (pretrained=False)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument(
        "--auc-test", type=int, default=0, help="spectrum: also score this many CIFAKE test images"
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fid_bench_bench_") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        test_paths: list[str] = []
        if ARCHIVE.exists():
            source = f"CIFAKE ({ARCHIVE})"
            paths, labels, test_paths, test_y = cifake_images(workdir / "img", args.n, args.auc_test)
        else:
            source = "demo generator (CIFAKE archive not found)"
            paths, labels = demo_images(workdir / "img", args.n)
        sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
        print(f"images: {len(paths)} from {source}, prepared in {time.perf_counter() - t0:.1f} s")
        job = {
            "paths": paths,
            "sha1s": sha1s,
            "model": args.model,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "cache": str(workdir / "cache"),
            "out": str(workdir / "features"),
        }
        job_file = workdir / "job.json"
        job_file.write_text(json.dumps(job))
        # other work on the machine slows every variant: the load average says how busy it was
        load = os.getloadavg()
        variants = ["notebook", "cold", "warm"]
        if args.model != "spectrum":
            variants.insert(1, "notebook1")
        results = [spawn(v, job_file) for v in variants]

        base = results[0]["seconds"]
        names = {
            "notebook": "notebook loop",
            "notebook1": "notebook, 1 thread",
            "cold": "harness, cold cache",
            "warm": "harness, warm cache",
        }
        print(
            f"\nmodel={args.model} n={len(paths)} batch_size={args.batch_size} num_workers={args.num_workers} "
            f"cpus={os.cpu_count()} load average before={load[0]:.1f} after={os.getloadavg()[0]:.1f}"
        )
        header = f"{'variant':<22}{'seconds':>9}{'images/s':>10}{'speed-up':>10}{'peak RSS MB':>13}{'peak PSS tree MB':>18}{'torch imported':>16}"
        print(header)
        print("-" * len(header))
        for r in results:
            print(
                f"{names[r['variant']]:<22}{r['seconds']:>9.2f}{r['images_per_s']:>10.1f}"
                f"{base / r['seconds']:>9.1f}x{r['peak_rss_mb']:>13.0f}{r['peak_pss_tree_mb']:>18.0f}"
                f"{str(r['torch_imported']):>16}"
            )
        nb, cold, warm = (np.load(job["out"] + f".{v}.npy") for v in ("notebook", "cold", "warm"))
        print(
            f"\nfeature dim {cold.shape[1]}; max |notebook - harness| = {np.abs(nb - cold).max():.2e}; "
            f"warm == cold: {bool(np.array_equal(cold, warm))}; warm run extracted {results[-1]['n_extracted']:.0f}"
        )
        if args.auc_test and args.model == "spectrum" and test_paths:
            auc = spectrum_auc(cold, labels, test_paths, test_y, job, workdir)
            print(
                f"spectrum + logistic regression: trained on {len(paths)} CIFAKE train images, "
                f"ROC-AUC {auc:.4f} on {len(test_paths)} CIFAKE test images"
            )


if __name__ == "__main__":
    main()
