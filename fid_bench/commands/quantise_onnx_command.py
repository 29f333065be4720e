"""``fid-bench quantise-onnx``: an int8 copy of an ONNX encoder, checked against its fp32 file.

    fid-bench quantise-onnx model=dinov2_vits14_onnx --method dynamic static \\
        --calibrate CIFAKE/train/REAL CIFAKE/train/FAKE --check cifake=CIFAKE/test --check sd_art=SD_ART

Each copy is written into the weights cache (keyed by the source's sha256) with a report: per-row
cosine to the fp32 features and a probe's ROC-AUC drift on every check set, speed of both. A copy
outside the bounds is kept but marked refused, and ``model.quantise=...`` then stops with the figures.
The library code is ``fid_bench.features.onnx_quantise``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fid_bench.errors import FidBenchError

NAME = "quantise-onnx"
HELP = "make and check int8 copies of an ONNX encoder"
DESCRIPTION = (
    "Quantise the ONNX file of a model config to int8 (dynamic, and/or static QDQ calibrated on your images), "
    "check each copy against fp32 (cosine >= 0.99 per row, probe ROC-AUC drift within 0.005 on every --check "
    "set) and record the verdict next to it; model.quantise=dynamic|static then runs a copy that passed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="+", help="config overrides; model=NAME is required")
    parser.add_argument("--method", nargs="+", choices=["dynamic", "static"], default=["dynamic"])
    parser.add_argument(
        "--calibrate", nargs="*", default=[], help="folders of calibration images (static): training images"
    )
    parser.add_argument(
        "--n-calibrate", type=int, default=256, help="calibration images in all (default 256)"
    )
    parser.add_argument(
        "--check", action="append", default=[], help="NAME=DIR with DIR/{real,fake}: a check set (repeatable)"
    )
    parser.add_argument("--n-check", type=int, default=400, help="images per check set (default 400)")
    parser.add_argument("--force", action="store_true", help="make the copies again even when cached")
    parser.set_defaults(handler=run)


def _calibration(folders: list[str], n: int) -> list[str]:
    lists = []
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise FidBenchError(f"--calibrate {folder}: no such folder")
        lists.append(sorted(str(p) for p in root.rglob("*") if p.is_file()))
    per = max(1, n // max(1, len(lists)))
    return [p for files in lists for p in files[:per]]


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from fid_bench.config import compose
    from fid_bench.features.encoders import build_encoder
    from fid_bench.features.onnx import OnnxEncoder
    from fid_bench.features.onnx_quantise import labelled_images, make_checked, summary

    if not any(o.startswith("model=") for o in args.overrides):
        raise FidBenchError("quantise-onnx: say which model, e.g. model=dinov2_vits14_onnx")
    if not args.check:
        raise FidBenchError("quantise-onnx: give at least one --check NAME=DIR (DIR/{real,fake})")
    sets = {}
    for item in args.check:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise FidBenchError(f"--check {item!r}: expected NAME=DIR")
        sets[name] = labelled_images(folder, args.n_check)
    cfg = compose(list(args.overrides))
    node = OmegaConf.select(cfg, "model.backbone")
    encoder = build_encoder(node) if node is not None else None
    if not isinstance(encoder, OnnxEncoder):
        raise FidBenchError(
            f"quantise-onnx: model={cfg.model.name} is not an ONNX encoder (model=onnx and presets)"
        )
    encoder.quantise = None  # the fp32 file, also when the preset names its int8 copy
    calibration = _calibration(args.calibrate, args.n_calibrate)
    refused = 0
    memo: dict = {}
    for method in args.method:
        path, report = make_checked(encoder, method, sets, calibration, force=args.force, fp32_memo=memo)
        print(
            f"{method}: {path} ({path.stat().st_size / 1e6:.1f} MB), {report['int8_images_per_s']:.1f} vs "
            f"{report['fp32_images_per_s']:.1f} fp32 images/s ({report['speedup']:.2f}x); {summary(report)}"
        )
        refused += not report["passed"]
    return 1 if refused else 0
