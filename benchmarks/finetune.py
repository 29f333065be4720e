"""Training throughput of the fine-tuning harness against a plain PyTorch loop, and the decoded cache.

Same network (``model=small_cnn`` as configured), same images, batch size, optimiser, augmentation
and DataLoader workers; one process, run one after the other:

    plain          a hand-written PyTorch loop: Dataset decoding each JPEG every epoch
    harness/off    FinetuneDetector (Lightning) with decoded_cache=off: decodes every epoch too
    harness/cache  FinetuneDetector with decoded_cache=memory: decodes once, then reads pixels

Throughput is training images per second of the best epoch after the first of each run (the first
pays worker start-up); epoch time is the training part of an epoch. Usage:

    python benchmarks/finetune.py                       # CIFAKE train subset if unpacked, else synthetic
    python benchmarks/finetune.py --root DIR --n 4096 --epochs 3 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CIFAKE = Path.home() / ".cache" / "fid_bench_data" / "cifake"


def image_table(root: Path | None, n: int, workdir: Path) -> tuple[pd.DataFrame, str]:
    """``n`` labelled images (half real, half fake) as a samples table, and where they came from."""
    rows = []
    if root is not None:
        base = root / "train" if (root / "train").is_dir() else root
        for cls, label in (("REAL", 0), ("FAKE", 1)):
            files = sorted((base / cls).iterdir())[: n // 2]
            rows += [{"path": str(p), "label": label} for p in files]
        source = f"CIFAKE images from {base}"
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        (workdir / "images").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = i % 2
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            if label:
                arr = np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1)
            path = workdir / "images" / f"{i:05d}.jpg"
            Image.fromarray(arr).save(path, quality=90)
            rows.append({"path": str(path), "label": label})
        source = "synthetic 32 px JPEGs (CIFAKE not found)"
    table = pd.DataFrame(rows)
    table["id"] = [Path(p).name for p in table["path"]]
    table["split"], table["group"] = "train", ""
    table["sha1"] = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in table["path"]]
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True), source


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(
            "config", overrides=["model=small_cnn", "data=folder", "data.root=.", *overrides]
        )


def plain_loop(table: pd.DataFrame, rows: np.ndarray, cfg, epochs: int, workers: int) -> list[float]:
    """A hand-written loop on the same network and recipe; returns per-epoch training seconds."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from fid_bench.finetune.augment import Augment, square_uint8
    from fid_bench.finetune.module import BinaryNet, cosine_with_warmup

    torch.manual_seed(0)
    built = instantiate(cfg.model.backbone).build()
    size = built.preprocessing.side
    net = BinaryNet(built)
    if cfg.trainer.channels_last:
        net = net.to(memory_format=torch.channels_last)
        net.channels_last = True
    augment = Augment.from_config(OmegaConf.to_container(cfg.classifier.augment))
    paths, labels = table["path"].to_numpy()[rows], table["label"].to_numpy()[rows].astype(np.float32)

    class Files(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int):
            with Image.open(paths[i]) as img:
                arr = square_uint8(img.convert("RGB"), size)
            rng = np.random.default_rng(torch.initial_seed() + i)
            return torch.from_numpy(augment(arr, rng)).permute(2, 0, 1), labels[i]

    loader = DataLoader(
        Files(),
        batch_size=cfg.classifier.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    opt_cfg = dict(cfg.classifier.optimizer)
    opt_cfg.pop("_target_"), opt_cfg.pop("_partial_")
    optimizer = torch.optim.AdamW(net.parameters(), **opt_cfg)
    sched_cfg = {k: v for k, v in dict(cfg.classifier.scheduler).items() if not k.startswith("_")}
    scheduler = cosine_with_warmup(
        optimizer, total_steps=epochs * len(loader), steps_per_epoch=len(loader), **sched_cfg
    )
    clip = cfg.classifier.gradient_clip_val
    times = []
    net.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        for pixels, y in loader:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(pixels), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            scheduler.step()
        times.append(time.perf_counter() - t0)
    return times


def harness(
    table: pd.DataFrame, fold, cfg, mode: str, workdir: Path, run: int = 0
) -> tuple[list[float], float]:
    """FinetuneDetector on the same rows; returns per-epoch training seconds and decode seconds."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from fid_bench.balance import NoBalance
    from fid_bench.contract import Job, NullLogger
    from fid_bench.data.samples import Samples

    with open_dict(cfg):
        cfg.classifier.decoded_cache = mode
        cfg.classifier.early_stopping_patience = None
    det = instantiate(cfg.classifier)
    job = Job(
        samples=Samples(table),
        balance=NoBalance(),
        cache_dir=workdir / f"cache_{mode}_{run}",
        output_dir=workdir / f"out_{mode}_{run}",
        logger=NullLogger(),
    )
    det.setup(job)
    det.fit_predict(job, fold)
    return [h["epoch_train_s"] for h in det.last_fit["history"]], det.extra_metrics()["decode_s"]


SETUPS = {
    "plain": "plain PyTorch loop (decode every epoch)",
    "off": "harness, decoded_cache=off (decode every epoch)",
    "memory": "harness, decoded_cache=memory (decode once)",
}


def run_one(setup: str, workdir: Path, overrides: list[str], run: int) -> dict:
    """One measurement in this (fresh) process."""
    table = pd.read_pickle(workdir / "table.pkl")
    n_eval = 64
    n_train = len(table) - 2 * n_eval
    fold = SimpleNamespace(
        index=0,
        train=np.arange(n_train),
        val=np.arange(n_train, n_train + n_eval),
        test=np.arange(n_train + n_eval, len(table)),
    )
    cfg = compose(overrides)
    if setup == "plain":
        epochs = int(cfg.trainer.max_epochs)
        return {
            "times": plain_loop(table, fold.train, cfg, epochs, int(cfg.trainer.num_workers)),
            "decode": None,
        }
    times, decode_s = harness(table, fold, cfg, setup, workdir, run)
    return {"times": times, "decode": decode_s}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="CIFAKE-style folder (default: unpacked CIFAKE)"
    )
    parser.add_argument("--n", type=int, default=4096, help="training images (half per class)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: trainer config)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of all setups")
    parser.add_argument("--one", choices=sorted(SETUPS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. classifier.batch_size=256")
    args = parser.parse_args()

    overrides = [f"trainer.max_epochs={args.epochs}", "trainer.progress_bar=false", *args.overrides]
    if args.workers is not None:
        overrides.append(f"trainer.num_workers={args.workers}")
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.workdir, overrides, args.run)))
        return

    import torch

    root = args.root or (DEFAULT_CIFAKE if (DEFAULT_CIFAKE / "train" / "REAL").is_dir() else None)
    workdir = Path(tempfile.mkdtemp(prefix="fid_bench_ft_bench_"))
    n_eval = 64
    table, source = image_table(root, args.n + 2 * n_eval, workdir)
    table.to_pickle(workdir / "table.pkl")
    n_train = len(table) - 2 * n_eval
    cfg = compose(overrides)
    print(
        f"{n_train} training images ({source}); {args.epochs} epochs; batch {cfg.classifier.batch_size}; "
        f"{cfg.trainer.num_workers} workers; {torch.get_num_threads()} torch threads; {os.cpu_count()} cores"
    )

    # every measurement runs in a fresh process (nothing left over from the previous one), and rounds
    # interleave the setups so that load from other processes hits them alike; each setup reports
    # its best steady-state epoch (the least disturbed measurement) and the median
    epochs: dict[str, list[float]] = {name: [] for name in SETUPS}
    decode: dict[str, float | None] = {}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for setup in SETUPS:
            cmd = [sys.executable, __file__, "--one", setup, "--workdir", str(workdir), "--run", str(r)]
            cmd += ["--epochs", str(args.epochs), *args.overrides]
            if args.workers is not None:
                cmd += ["--workers", str(args.workers)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                raise SystemExit(f"{setup} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(line[len("RESULT ") :])
            times = result["times"]
            epochs[setup] += times[1:] if len(times) > 1 else times
            decode[setup] = result["decode"]
    load_after = os.getloadavg()[0]

    print(f"\nload average {load_before:.1f} before, {load_after:.1f} after; {args.rounds} round(s)")
    print(f"| {'setup':<50} | images/s | epoch train s (best / median) | decode once s |")
    print(f"|{'-' * 52}|----------|-------------------------------|---------------|")
    rates = {}
    for setup, times in epochs.items():
        best, median = float(np.min(times)), float(np.median(times))
        rates[setup] = n_train / best
        dec = "-" if decode[setup] is None else f"{decode[setup]:.1f}"
        print(f"| {SETUPS[setup]:<50} | {rates[setup]:8.0f} | {best:13.2f} / {median:13.2f} | {dec:>13} |")
    plain, off, cached = rates["plain"], rates["off"], rates["memory"]
    print(
        f"\nharness/plain (same decoding): {off / plain:.2f}x; decoded cache speed-up on epoch time: "
        f"{cached / off:.2f}x; harness with cache vs plain loop: {cached / plain:.2f}x"
    )
    if not math.isfinite(plain):
        raise SystemExit("no measurement")


if __name__ == "__main__":
    main()
