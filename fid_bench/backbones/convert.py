"""Weights from a packaged file rebuilt as a timm network's state dict, checked, and cached.

A ``Conversion`` names a known file (``fid_bench.backbones.onnx_files``), the timm architecture its
weights belong to, how to read the file into named tensors and how each name maps to timm's. The
first build of a converted network is checked three ways, each failure one line:

* every tensor of the file is mapped (none left over, except parts declared as not belonging to the
  network, e.g. a head on top of the backbone), every tensor of the timm network receives one
  (none missing), and shapes match;
* the converted network's output on a batch of images is compared with the source's own -- ONNX
  Runtime on the file for an ONNX source, the package's module for a state dict -- within a stated
  tolerance (``max |a - b| <= atol + rtol * max |source|``).

The checked state dict is then cached (``<weights dir>/converted/<name>/<arch>-<sha256[:16]>.safetensors``,
keyed by the source file's pinned sha256 and the conversion's version) with a JSON report of the check,
so later builds load it directly. Nothing here imports torch, timm or onnx at module import time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fid_bench.backbones import onnx_files
from fid_bench.errors import FidBenchError, one_line

if TYPE_CHECKING:
    from torch import Tensor, nn

log = logging.getLogger(__name__)

#: bump when a mapping changes: converted files of an older version are rebuilt
VERSION = 1
#: images in the batch the converted network is compared on
CHECK_BATCH = 4


@dataclass(frozen=True)
class Conversion:
    """How one known file becomes the state dict of one timm architecture."""

    file: str  # the known file's name
    arch: str  # the timm architecture
    native_size: int  # the input side the source runs at (and the check uses)
    read: Callable[[Path], dict[str, Any]]  # the file -> named tensors
    rename: Callable[[list[str], list[str]], dict[str, str]]  # (source keys, target keys) -> mapping
    reference: Callable[[Path, Any, Path], Any]  # (file, images, weights dir) -> the source's output
    converted: Callable[[Any, Any], Any]  # (timm network, images) -> the comparable output
    build_kwargs: dict[str, Any] = field(default_factory=dict)  # timm kwargs of the checked network
    drop_prefixes: tuple[str, ...] = ()  # parts of the file that are not part of the network
    atol: float = 1e-4
    rtol: float = 1e-4
    what: str = ""  # what is compared, for the report


# --------------------------------------------------------------------------- the mapping
def map_state_dict(
    source: Mapping[str, Any],
    mapping: Mapping[str, str],
    target_shapes: Mapping[str, tuple[int, ...]],
    *,
    what: str,
    drop_prefixes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``source`` renamed by ``mapping`` into exactly the keys (and shapes) of ``target_shapes``.

    One-line errors: a source tensor left unmapped (or mapped to a name the target lacks), a
    target tensor that receives nothing, two sources for one target, a shape that differs.
    """
    out: dict[str, Any] = {}
    for key, value in source.items():
        if any(key.startswith(p) for p in drop_prefixes):
            continue
        new = mapping.get(key)
        if new is None or new not in target_shapes:
            extra = sorted(
                k
                for k in source
                if not any(k.startswith(p) for p in drop_prefixes) and mapping.get(k) not in target_shapes
            )
            raise FidBenchError(
                f"{what}: {len(extra)} tensor(s) of the file map to nothing in the network, e.g. {extra[0]}"
                + (f" (-> {mapping[extra[0]]})" if extra[0] in mapping else "")
            )
        if new in out:
            raise FidBenchError(f"{what}: two tensors of the file map to {new}")
        want = tuple(target_shapes[new])
        have = tuple(value.shape)
        if have != want:
            raise FidBenchError(
                f"{what}: {key} -> {new} has shape {list(have)}, the network's is {list(want)}"
            )
        out[new] = value
    missing = sorted(set(target_shapes) - set(out))
    if missing:
        raise FidBenchError(
            f"{what}: {len(missing)} tensor(s) of the network get nothing from the file, e.g. {missing[0]}"
        )
    return out


def check_outputs(source: Any, converted: Any, *, atol: float, rtol: float, what: str) -> dict[str, float]:
    """``max |a - b| <= atol + rtol * max |source|`` or a one-line error; the figures either way."""
    import numpy as np

    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(converted, dtype=np.float64)
    if a.shape != b.shape:
        raise FidBenchError(
            f"{what}: the converted network returns {list(b.shape)}, the source {list(a.shape)}"
        )
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    bound = atol + rtol * scale
    if not diff <= bound:
        raise FidBenchError(
            f"{what}: the converted network differs from the source by up to {diff:.3g} "
            f"(allowed {bound:.3g} = {atol:g} + {rtol:g} x {scale:.3g}); refusing the conversion"
        )
    return {"max_abs_diff": diff, "max_abs_source": scale, "allowed": bound, "atol": atol, "rtol": rtol}


def check_images(size: int, n: int = CHECK_BATCH, seed: int = 0) -> Any:
    """A fixed batch of photo-like test inputs in ``[0, 1]``: smooth colour fields plus fine noise."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 8, 8), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0.0, 0.05, (n, 3, size, size)).astype(np.float32))
    return (smooth + noise).clamp(0.0, 1.0)


def normalise(images: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    import torch

    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


# --------------------------------------------------------------------------- the cache
def converted_path(conv: Conversion, weights_dir: str | os.PathLike | None = None) -> Path:
    """Where the checked state dict of ``conv`` is cached (keyed by the source's pinned sha256)."""
    entry = onnx_files.known(conv.file)
    root = Path(weights_dir).expanduser() if weights_dir else onnx_files.default_weights_dir()
    return root / "converted" / conv.file / f"{conv.arch}-v{VERSION}-{entry.sha256[:16]}.safetensors"


def converted_state_dict(
    conv: Conversion, weights_dir: str | os.PathLike | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The checked timm state dict of ``conv`` (from the cache, else converted, checked and cached)."""
    from filelock import FileLock
    from safetensors.torch import load_file, save_file

    path = converted_path(conv, weights_dir)
    report_path = path.with_suffix(".json")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                source = onnx_files.ensure(conv.file, weights_dir)
                sd, report = convert(conv, source, weights_dir)
                part = path.with_name(path.name + ".part")
                save_file({k: v.contiguous() for k, v in sd.items()}, str(part))
                report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
                os.replace(part, path)
                log.info(
                    "%s: converted into timm %s, %d tensors, output within %.2g of the source (%s)",
                    conv.file,
                    conv.arch,
                    len(sd),
                    report["check"]["max_abs_diff"],
                    path,
                )
    try:
        sd = load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types on a damaged file
        raise FidBenchError(
            f"{path}: unreadable converted weights ({one_line(err)}); delete it to convert again"
        ) from None
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return sd, report


def convert_now(name: str, weights_dir: str | os.PathLike | None) -> list[str]:
    """Convert and check known file ``name`` when it becomes a timm network, so the first run need not;
    lines to print (none for a file without a conversion)."""
    if name not in CONVERSIONS:
        return []
    conv = conversion(name)
    _, report = converted_state_dict(conv, weights_dir)
    check = report.get("check", {})
    return [
        f"{name}: converted into timm {conv.arch} ({report.get('tensors', '?')} tensors, every one mapped, "
        f"none left over), {conv.what}: max |diff| {check.get('max_abs_diff', float('nan')):.2g} "
        f"(allowed {check.get('allowed', float('nan')):.2g}); {converted_path(conv, weights_dir)}"
    ]


def convert(
    conv: Conversion, source: Path, weights_dir: str | os.PathLike | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``source``, map it onto ``conv.arch`` (every tensor, no leftovers, same shapes), compare outputs."""
    import timm
    import torch

    from fid_bench.backbones.weights import file_sha256

    entry = onnx_files.known(conv.file)
    actual = file_sha256(source)
    if actual != entry.sha256:
        raise FidBenchError(
            f"{conv.file}: {source} has sha256 {actual[:12]}..., not the pinned {entry.sha256[:12]}...; "
            f"refusing to convert it (delete it and run `fid-bench weights get {conv.file}`)"
        )
    what = f"{conv.file} -> timm {conv.arch}"
    tensors = conv.read(source)
    model = timm.create_model(conv.arch, pretrained=False, **conv.build_kwargs)
    target = model.state_dict()
    mapping = conv.rename(list(tensors), list(target))
    sd = map_state_dict(
        tensors,
        mapping,
        {k: tuple(v.shape) for k, v in target.items()},
        what=what,
        drop_prefixes=conv.drop_prefixes,
    )
    sd = {k: v.to(target[k].dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    images = check_images(conv.native_size)
    root = Path(weights_dir).expanduser() if weights_dir else onnx_files.default_weights_dir()
    with torch.inference_mode():
        reference = conv.reference(source, images, root)
        mine = conv.converted(model, images)
    check = check_outputs(reference, mine, atol=conv.atol, rtol=conv.rtol, what=what)
    report = {
        "file": conv.file,
        "source_sha256": entry.sha256,
        "arch": conv.arch,
        "version": VERSION,
        "tensors": len(sd),
        "dropped": sorted(
            {k.split(".")[0] for k in tensors if any(k.startswith(p) for p in conv.drop_prefixes)}
        ),
        "compared": conv.what,
        "check_images": f"{CHECK_BATCH} x 3 x {conv.native_size} x {conv.native_size} (fixed seed)",
        "check": check,
        "libs": {"timm": timm.__version__, "torch": torch.__version__},
    }
    return sd, report


# --------------------------------------------------------------------------- EfficientNet-Lite
_LITE_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# block parts: an inverted residual (expansion) and a depthwise-separable block (no expansion)
_LITE_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


def efficientnet_lite_mapping(source_keys: list[str], target_keys: list[str]) -> dict[str, str]:
    """The package's names (``_blocks.K._expand_conv.weight``) -> timm's (``blocks.S.I.conv_pw.weight``).

    The K-th block of the flat list is the K-th block of timm's stages in order; its parts are
    renamed by its kind (timm's inverted residual has ``conv_pwl``, the first stage's depthwise-
    separable block does not). Names that fit no rule are left out (``map_state_dict`` reports them).
    """
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for k in target_keys if (m := _BLOCK.match(k))})
    inverted = {
        b for b in blocks if any(k.startswith(f"blocks.{b[0]}.{b[1]}.conv_pwl.") for k in target_keys)
    }
    mapping: dict[str, str] = {}
    for key in source_keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
            flat = int(parts[1])
            if flat >= len(blocks):
                continue
            stage, index = blocks[flat]
            table = _LITE_IR if (stage, index) in inverted else _LITE_DS
            if parts[2] in table:
                mapping[key] = f"blocks.{stage}.{index}.{table[parts[2]]}." + ".".join(parts[3:])
        elif parts[0] in _LITE_TOP and len(parts) >= 2:
            mapping[key] = f"{_LITE_TOP[parts[0]]}." + ".".join(parts[1:])
    return mapping


def read_torch_state_dict(path: Path) -> dict[str, Any]:
    from fid_bench.backbones.weights import load_state_dict

    return load_state_dict(path)


def efficientnet_lite_reference(variant: int) -> Callable[[Path, Any, Path], Any]:
    """The package's own EfficientNet-Lite module (imported from its pinned wheel) on the file's weights."""

    def reference(path: Path, images: Any, weights_dir: Path) -> Any:
        import torch

        wheel = onnx_files.ensure("efficientnet_lite_pytorch", weights_dir)
        module = import_from_wheel(wheel, "efficientnet_lite_pytorch")
        net = module.EfficientNet.from_name(f"efficientnet-lite{variant}")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        return net.eval()(normalise(images, LITE_MEAN, LITE_STD))

    return reference


def efficientnet_lite_converted(model: nn.Module, images: Any) -> Any:
    return model(normalise(images, LITE_MEAN, LITE_STD))


#: the TF EfficientNet-Lite input scaling ((x - 127) / 128), as timm declares for tf_efficientnet_lite*
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def import_from_wheel(wheel: Path, package: str) -> Any:
    """``package`` imported from a pure-Python wheel file (zip import), without installing it.

    Its modules are removed from ``sys.modules`` afterwards, so nothing else picks them up by name.
    """
    import importlib
    import sys

    before = set(sys.modules)
    sys.path.insert(0, str(wheel))
    try:
        module = importlib.import_module(package)
    except Exception as err:  # noqa: BLE001 - whatever the module raises on import
        raise FidBenchError(f"{wheel.name}: cannot import {package} from it ({one_line(err)})") from None
    finally:
        sys.path.remove(str(wheel))
        for name in set(sys.modules) - before:
            if name == package or name.startswith(package + "."):
                del sys.modules[name]
    return module


# --------------------------------------------------------------------------- DINOv2 from ONNX
#: the backbone's final layer norm in the packaged DINOv2 graph: the hidden states (N x 257 x 384 at 224 px)
DINOV2_HIDDEN = "/backbone/layernorm/Add_1_output_0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HF_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_TOP = {
    "backbone.embeddings.cls_token": "cls_token",
    "backbone.embeddings.position_embeddings": "pos_embed",
    "backbone.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "backbone.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "backbone.layernorm.weight": "norm.weight",
    "backbone.layernorm.bias": "norm.bias",
}
_HF_LAYER = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")


def read_dinov2_onnx(path: Path) -> dict[str, Any]:
    """The float weights of a transformers DINOv2 export, named as in transformers.

    Named initialisers keep their names; a MatMul's unnamed weight (``onnx::MatMul_N``, stored
    input x output) takes its node's name (``/backbone/encoder/layer.0/mlp/fc1/MatMul`` ->
    ``backbone.encoder.layer.0.mlp.fc1.weight``, transposed); the query/key/value projections are
    fused into timm's ``qkv`` layout; the position embedding (stored as its class-token part and
    its patch-grid part) is put back together. Anything else keeps its ONNX name and so stays
    unmapped, which the mapping check reports.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - onnx raises several types for bad files
        raise FidBenchError(f"{path}: not a readable ONNX file ({one_line(err)})") from None
    inits = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    }
    out: dict[str, Any] = {}
    renamed: set[str] = set()
    pos_cls = pos_grid = None
    for node in model.graph.node:
        for name in node.input:
            if name not in inits or not name.startswith("onnx::"):
                continue
            if node.op_type == "MatMul" and node.name.endswith("/MatMul"):
                key = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".") + ".weight"
                out[key] = inits[name].t().contiguous()
                renamed.add(name)
            elif node.name.startswith("/backbone/embeddings/Concat") and inits[name].dim() == 3:
                pos_cls, _ = inits[name], renamed.add(name)
            elif node.name.startswith("/backbone/embeddings/Reshape") and inits[name].dim() == 3:
                pos_grid, _ = inits[name], renamed.add(name)
    if pos_cls is not None and pos_grid is not None:
        out["backbone.embeddings.position_embeddings"] = torch.cat([pos_cls, pos_grid], dim=1)
    for name, value in inits.items():
        if name not in renamed:
            out[name] = value
    return _fuse_qkv(out)


def _fuse_qkv(sd: dict[str, Any]) -> dict[str, Any]:
    """transformers' separate query/key/value projections -> one ``qkv`` tensor per layer (timm's layout)."""
    import torch

    out = dict(sd)
    prefix = "backbone.encoder.layer."
    layers = {k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)}
    for layer in layers:
        base = f"{prefix}{layer}.attention.attention."
        for kind in ("weight", "bias"):
            names = [f"{base}{p}.{kind}" for p in ("query", "key", "value")]
            if all(n in out for n in names):
                out[f"{base}qkv.{kind}"] = torch.cat([out.pop(n) for n in names], dim=0)
    return out


def dinov2_mapping(source_keys: list[str], target_keys: list[str]) -> dict[str, str]:
    """transformers DINOv2 names -> timm ``vit_*_patch14_dinov2`` names."""
    mapping: dict[str, str] = {}
    for key in source_keys:
        if key in _HF_TOP:
            mapping[key] = _HF_TOP[key]
            continue
        m = _HF_LAYER.match(key)
        if not m:
            continue
        layer, part, kind = m.groups()
        if part == "attention.attention.qkv":
            mapping[key] = f"blocks.{layer}.attn.qkv.{kind}"
        elif kind == "lambda1" and f"{part}.lambda1" in _HF_BLOCK:
            mapping[key] = f"blocks.{layer}.{_HF_BLOCK[part + '.lambda1']}"
        elif part in _HF_BLOCK:
            mapping[key] = f"blocks.{layer}.{_HF_BLOCK[part]}.{kind}"
    return mapping


def dinov2_reference(path: Path, images: Any, weights_dir: Path) -> Any:
    """ONNX Runtime on the file's backbone (cut at its final layer norm): N x T x D hidden states."""
    import onnxruntime as ort

    from fid_bench.backbones.onnx_graph import expose

    entry_sha = onnx_files.known("dinov2_vits14").sha256
    cut = expose(path, [DINOV2_HIDDEN], entry_sha, weights_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(cut), sess_options=opts, providers=["CPUExecutionProvider"])
    x = normalise(images, IMAGENET_MEAN, IMAGENET_STD).numpy()
    (hidden,) = session.run([DINOV2_HIDDEN], {session.get_inputs()[0].name: x})
    return hidden


def dinov2_converted(model: nn.Module, images: Any) -> Any:
    """The timm network's hidden states (after its final norm) at the check's input size."""
    grid = images.shape[-1] // 14
    pos = resample_pos_embed(model.pos_embed.data, grid)
    check = _dinov2_at(model, images.shape[-1], pos)
    return check.forward_features(normalise(images, IMAGENET_MEAN, IMAGENET_STD))


def _dinov2_at(model: nn.Module, size: int, pos_embed: Any) -> nn.Module:
    import timm

    net = timm.create_model(model.default_cfg["architecture"], pretrained=False, num_classes=0, img_size=size)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    sd["pos_embed"] = pos_embed
    net.load_state_dict(sd, strict=True)
    return net.eval()


def resample_pos_embed(pos_embed: Any, grid: int, prefix_tokens: int = 1) -> Any:
    """A ``1 x (prefix + g*g) x D`` position embedding resampled to a ``grid x grid`` patch grid.

    Bicubic without antialiasing (a = -0.75, half-pixel centres): what the packaged transformers
    export computes at run time, so the converted network matches it at any input size.
    """
    import math

    import torch.nn.functional as F

    prefix, patches = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old = int(math.isqrt(patches.shape[1]))
    if old == grid:
        return pos_embed
    dim = patches.shape[-1]
    g = patches.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=(grid, grid), mode="bicubic", align_corners=False, antialias=False)
    g = g.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return __import__("torch").cat([prefix, g], dim=1)


# --------------------------------------------------------------------------- the registry
CONVERSIONS: dict[str, Conversion] = {
    "dinov2_vits14": Conversion(
        file="dinov2_vits14",
        arch="vit_small_patch14_dinov2",
        native_size=224,
        read=read_dinov2_onnx,
        rename=dinov2_mapping,
        reference=dinov2_reference,
        converted=dinov2_converted,
        build_kwargs={"num_classes": 0},  # stored at timm's native 518 px grid (37 x 37 positions)
        drop_prefixes=("decoder.",),  # the saliency decoder on top of the backbone
        atol=1e-3,
        rtol=1e-4,
        what="hidden states (all 257 tokens after the final norm), ONNX Runtime on the file",
    ),
    **{
        f"efficientnet_lite{n}": Conversion(
            file=f"efficientnet_lite{n}",
            arch=f"tf_efficientnet_lite{n}",
            native_size=size,
            read=read_torch_state_dict,
            rename=efficientnet_lite_mapping,
            reference=efficientnet_lite_reference(n),
            converted=efficientnet_lite_converted,
            build_kwargs={},  # with its 1000-class head, so the logits can be compared
            atol=1e-3,
            rtol=1e-4,
            what="ImageNet logits, the package's own EfficientNet module on the file",
        )
        for n, size in ((0, 224), (1, 240), (2, 260))
    },
}


def conversion(name: str) -> Conversion:
    if name not in CONVERSIONS:
        raise FidBenchError(f"no conversion for {name!r}; known: {', '.join(sorted(CONVERSIONS))}")
    return CONVERSIONS[name]
