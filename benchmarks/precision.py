"""SmallCNN training speed in fp32 and under bf16 autocast, for several widths, side by side.

A plain forward/backward/AdamW loop on random 32 px batches (channels-last, as the harness trains),
so the figure is the network's own cost without data loading. For each width the fp32 and the bf16
measurement run one after the other in one process, so their ratio is measured under the same load.
bf16 pays off on CPUs with AVX512-BF16 / AMX and on recent GPUs; elsewhere it is emulated and slower.

    python benchmarks/precision.py
    python benchmarks/precision.py --widths 16,32,64,128 32,64,128,256 --steps 20
"""

from __future__ import annotations

import argparse
import time

import torch

from fid_bench.backbones.small_cnn import SmallCNNNet


def images_per_s(widths: list[int], blocks: int, bf16: bool, batch: int, steps: int) -> float:
    """Training images per second of ``steps`` optimiser steps after three warm-up steps."""
    torch.manual_seed(0)
    net = SmallCNNNet(widths, blocks, 0.0)
    model = torch.nn.Sequential(net, torch.nn.Linear(net.num_features, 1)).to(
        memory_format=torch.channels_last
    )
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 1)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--widths",
        nargs="+",
        default=["16,32,64,128", "24,48,96,192", "32,64,128,256", "64,128,256,512"],
        help="comma-separated stage widths, one network per argument",
    )
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print("| widths | fp32 images/s | bf16 images/s | bf16 / fp32 |")
    print("|---|---:|---:|---:|")
    for spec in args.widths:
        widths = [int(w) for w in spec.split(",")]
        fp32 = images_per_s(widths, args.blocks, False, args.batch, args.steps)
        bf16 = images_per_s(widths, args.blocks, True, args.batch, args.steps)
        print(f"| {'-'.join(map(str, widths))} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f} |", flush=True)


if __name__ == "__main__":
    main()
