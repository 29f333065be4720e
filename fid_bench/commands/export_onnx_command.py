"""``fid-bench export-onnx``: any torch encoder the harness builds, as a checked ONNX file.

    fid-bench export-onnx model=clip_vit_l14 --int8 --out clip_l14.int8.onnx

The encoder is composed from the project config exactly as a run would build it (overrides as on
the ``python -m fid_bench`` command line), with its weights when it has them; the library code is
``fid_bench.features.onnx_export``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fid_bench.errors import FidBenchError

NAME = "export-onnx"
HELP = "export an encoder to a checked ONNX file"
DESCRIPTION = (
    "Export the frozen encoder of a model config (timm or open_clip, with its weights) to ONNX with a "
    "dynamic batch axis; the file is written only if it matches torch on a batch (fp32: relative "
    "difference <= 1e-4; --int8: cosine >= 0.99 per row). Prints both speeds and the model=onnx overrides."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="+", help="config overrides; model=NAME is required")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument(
        "--int8", action="store_true", help="quantise the weights to int8 (onnxruntime dynamic)"
    )
    parser.add_argument("--batch", type=int, default=8, help="images in the check batch (default 8)")
    parser.add_argument(
        "--images", default=None, help="a folder of images for the check (default: synthetic)"
    )
    parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    parser.add_argument("--opset", type=int, default=18)
    parser.set_defaults(handler=run)


def _check_images(folder: str, n: int) -> list[Any]:
    from fid_bench.data.decode import ImageDecodeError, load_rgb

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FidBenchError(f"--images {folder}: no such folder")
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            out.append(load_rgb(path))
        except ImageDecodeError:
            continue
        if len(out) == n:
            return out
    raise FidBenchError(f"--images {folder}: found {len(out)} readable images, --batch needs {n}")


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from fid_bench.config import compose
    from fid_bench.features.encoders import FrozenEncoder, build_encoder
    from fid_bench.features.onnx_export import export_encoder

    if not any(o.startswith("model=") for o in args.overrides):
        raise FidBenchError("export-onnx: say which model, e.g. model=clip_vit_b32")
    if args.batch < 1:
        raise FidBenchError(f"--batch must be >= 1, got {args.batch}")
    cfg = compose(list(args.overrides))
    node = OmegaConf.select(cfg, "model.backbone")
    if node is None:
        raise FidBenchError(f"export-onnx: model={cfg.model.name} has no frozen encoder to export")
    encoder = build_encoder(node)
    if not isinstance(encoder, FrozenEncoder):
        raise FidBenchError(
            f"export-onnx: model={cfg.model.name} builds {type(encoder).__name__}; only torch encoders "
            "(timm, open_clip) export"
        )
    images = _check_images(args.images, args.batch) if args.images else None
    report = export_encoder(
        encoder,
        args.out,
        int8=args.int8,
        images=images,
        batch=args.batch,
        exporter=args.exporter,
        opset=args.opset,
        source=" ".join(args.overrides),
    )
    for line in report.lines():
        print(line)
    return 0
