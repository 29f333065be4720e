"""Export a torch encoder the harness builds (open_clip, timm; with their weights) to a checked ONNX file.

``export_encoder`` runs the encoder's network on one batch of its own preprocessed images, exports
it with a dynamic batch axis (torch's ``torch.export``-based exporter, or the older TorchScript
one), and compares ONNX Runtime's outputs with torch's on that batch:

* fp32: the largest absolute difference relative to the largest absolute output value must be
  at most ``FP32_TOLERANCE`` (1e-4);
* ``int8=True`` (onnxruntime dynamic quantisation of the weights): every row's cosine similarity
  with torch's must be at least ``INT8_MIN_COSINE`` (0.99).

A file that fails is never written: the export goes to a temporary file beside ``out``, which
replaces ``out`` only after the check. The preprocessing the network expects is recorded in the
file's metadata (``fid_bench.preprocess``) and returned as the ``model=onnx`` overrides that
reproduce it, and the speed of torch and of the ONNX file on the batch is measured side by side.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fid_bench.errors import FidBenchError, one_line
from fid_bench.features.onnx import PREPROCESS_META, preprocess_config

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.99
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "image_embeds"


@dataclass
class ExportReport:
    """What ``export_encoder`` wrote and measured."""

    path: Path
    int8: bool
    batch: int
    dim: int
    max_rel_diff: float  # fp32 file against torch (also measured before quantising)
    min_cosine: float  # of the written file against torch, per row
    torch_images_per_s: float
    onnx_images_per_s: float
    preprocess: dict[str, Any]
    overrides: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        check = f"max relative difference {self.max_rel_diff:.2e} (limit {FP32_TOLERANCE:g})"
        if self.int8:
            check += f", int8 min row cosine {self.min_cosine:.4f} (limit {INT8_MIN_COSINE})"
        return [
            f"wrote {self.path} ({self.path.stat().st_size / 1e6:.1f} MB, {self.dim}-d output, "
            f"{'int8' if self.int8 else 'fp32'})",
            f"check on {self.batch} images: {check}",
            f"speed on that batch: torch {self.torch_images_per_s:.1f} images/s, "
            f"onnxruntime {self.onnx_images_per_s:.1f} images/s "
            f"({self.onnx_images_per_s / max(self.torch_images_per_s, 1e-9):.2f}x)",
            "use it with: python -m fid_bench " + " ".join(self.overrides),
        ]


def encoder_preprocess(encoder: Any) -> dict[str, Any]:
    """The preprocessing of a loaded frozen encoder (its backbone's declaration) as ``model=onnx`` settings."""
    pp = getattr(encoder, "preprocessing", None)
    if pp is None:
        raise FidBenchError(f"export: {encoder} declares no preprocessing; only frozen backbones export")
    native = getattr(getattr(encoder, "backbone", None), "native", None)  # model.resize=native
    if (pp.resize_mode not in ("shortest", "squash", "longest") and not native) or pp.size[0] != pp.size[-1]:
        raise FidBenchError(
            f"export: {encoder.name} resizes with {pp.resize_mode!r} to {pp.size}; model=onnx takes a "
            "square input resized by shortest, squash or longest"
        )
    if native:  # the same windows on the ONNX path
        return preprocess_config(
            int(pp.size[-1]), "native", 1.0, str(pp.interpolation), pp.mean, pp.std, **native
        )
    return preprocess_config(
        int(pp.size[-1]),
        pp.resize_mode,
        float(pp.crop_pct) if pp.resize_mode == "shortest" else 1.0,
        str(pp.interpolation),
        pp.mean,
        pp.std,
    )


def network_batch(encoder: Any, imgs: list[Any]) -> Any:
    """The float ``[N, 3, H, W]`` tensor the encoder's network takes for ``imgs`` (with
    ``resize=native``, each image's first window)."""
    import torch

    items = [encoder.transform(im) for im in imgs]
    if getattr(encoder, "preprocessing", None) is not None and np.asarray(items[0]).ndim == 4:
        return encoder.normalise(np.stack([np.asarray(i)[0] for i in items]))
    return torch.stack([torch.as_tensor(i) for i in items]).float()


def sample_images(n: int, seed: int = 0, size: int = 256) -> list[Any]:
    """``n`` deterministic images with some structure (smooth gradients plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 9) + rng.uniform(0, 6)) for _ in range(3)], axis=-1)
        img = (base * 80 + 128 + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        out.append(Image.fromarray(img))
    return out


class _Features:
    """The encoder's forward as a single 2-D tensor, as ``TorchEncoder._forward`` returns it."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = self.inner(x)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                return out.flatten(1)

        return Wrapped(model).eval()


def _torch_export(model: Any, x: Any, path: Path, *, exporter: str, opset: int) -> None:
    import torch

    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    try:
        if exporter == "dynamo":
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                **kwargs,
            )
        elif exporter == "torchscript":
            # a frozen nn.MultiheadAttention takes a fused fast path this exporter cannot translate;
            # with gradients on, it traces the plain operations instead
            model.requires_grad_(True)
            try:
                torch.onnx.export(
                    model,
                    (x,),
                    str(path),
                    dynamo=False,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    **kwargs,
                )
            finally:
                model.requires_grad_(False)
        else:
            raise FidBenchError(f"export: exporter must be dynamo or torchscript, got {exporter!r}")
    except FidBenchError:
        raise
    except Exception as err:  # noqa: BLE001 - the exporters raise many types; the user needs one line
        log.debug("export failed", exc_info=True)
        raise FidBenchError(f"export: torch.onnx.export failed ({one_line(err, 300)})") from None


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))


def onnx_outputs(path: Path, x: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, float]:
    """The file's output on ``x`` under ONNX Runtime (CPU), and its images/s (best of 3 runs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    out = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        session.run([OUTPUT_NAME], {INPUT_NAME: x})
        best = min(best, time.perf_counter() - t0)
    return np.asarray(out, dtype=np.float32), len(x) / best


def _torch_outputs(model: Any, x: Any) -> tuple[np.ndarray, float]:
    import torch

    with torch.inference_mode():
        out = model(x).float().numpy()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    return out, len(x) / best


def max_rel_diff(ref: np.ndarray, got: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute reference value."""
    if ref.shape != got.shape:
        return float("inf")
    return float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))


def row_cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    if ref.shape != got.shape:
        return np.zeros(len(ref))
    num = (ref * got).sum(axis=1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    return num / np.maximum(den, 1e-12)


def export_encoder(
    encoder: Any,
    out: str | os.PathLike,
    *,
    int8: bool = False,
    images: list[Any] | None = None,
    batch: int = 8,
    exporter: str = "dynamo",
    opset: int = 18,
    source: str = "",
) -> ExportReport:
    """Export ``encoder`` (a frozen timm or open_clip backbone) to ``out``; see the module docstring."""

    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        raise FidBenchError(f"export: --out must end in .onnx, got {out}")
    if not out.parent.is_dir():
        raise FidBenchError(f"export: folder {out.parent} does not exist")
    encoder.prepare("cpu")
    encoder.load()
    preprocess = encoder_preprocess(encoder)
    imgs = images if images is not None else sample_images(batch)
    x = network_batch(encoder, imgs)
    model = _Features.wrap(encoder._model)
    ref, torch_ips = _torch_outputs(model, x)
    x_np = x.numpy()

    with tempfile.TemporaryDirectory(prefix=".export_", dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _torch_export(model, x, fp32, exporter=exporter, opset=opset)
        meta = {PREPROCESS_META: json.dumps(preprocess), "fid_bench.source": source or encoder.name}
        _set_metadata(fp32, meta)
        got, onnx_ips = onnx_outputs(fp32, x_np)
        rel = max_rel_diff(ref, got)
        if not rel <= FP32_TOLERANCE:
            raise FidBenchError(
                f"export: the ONNX file differs from torch by {rel:.2e} (relative, limit {FP32_TOLERANCE:g}) "
                f"on {len(x_np)} images; nothing written"
            )
        final = fp32
        cosines = row_cosines(ref, got)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = Path(tmp) / "int8.onnx"
            try:
                quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8)
            except Exception as err:  # noqa: BLE001 - the quantiser raises many types
                raise FidBenchError(f"export: int8 quantisation failed ({one_line(err, 300)})") from None
            _set_metadata(q, {**meta, "fid_bench.quantisation": "onnxruntime dynamic int8 (QInt8 weights)"})
            got, onnx_ips = onnx_outputs(q, x_np)
            cosines = row_cosines(ref, got)
            if not cosines.min() >= INT8_MIN_COSINE:
                raise FidBenchError(
                    f"export: int8 rows have cosine {cosines.min():.4f} with torch's (limit {INT8_MIN_COSINE}) "
                    f"on {len(x_np)} images; nothing written"
                )
            final = q
        os.replace(final, out)

    overrides = [f"model=onnx model.path={out}"] + [
        f"model.{k}={json.dumps(v).replace(' ', '') if isinstance(v, list) else v}"
        for k, v in preprocess.items()
    ]
    return ExportReport(
        path=out,
        int8=int8,
        batch=len(x_np),
        dim=int(ref.shape[1]),
        max_rel_diff=rel,
        min_cosine=float(cosines.min()),
        torch_images_per_s=torch_ips,
        onnx_images_per_s=onnx_ips,
        preprocess=preprocess,
        overrides=overrides,
    )
