"""int8 copies of an ONNX encoder (``model.quantise``): made once, cached, checked before use.

Two ways, both onnxruntime's own (``onnxruntime.quantization``):

* ``dynamic`` -- weights of ``MatMul``/``Gemm``/``Conv`` stored as int8 (per output channel),
  activations quantised on the fly per batch. Needs no data, so it is made on first use.
* ``static`` -- QDQ format, weights int8 per channel, activations uint8 with ranges calibrated
  (min-max) on images the user gives (a few hundred training images): ``fid-bench quantise-onnx``
  makes it; a job naming it without that step stops with a one-line error saying so.

The source is the file the session would run (the known file, or its copy cut at ``expose``), so
DINOv2's saliency head is never quantised along. The copy lives in the weights cache as
``onnx/derived/<source sha256[:16]>-int8-<method>-<key>.onnx`` next to a ``.json`` report; the key
holds what was exposed, the method and the onnxruntime version. A static copy is made again only on
``--force`` (the report names its calibration images); features of it are keyed by its content.

**Checks** (``check``): against the fp32 file on the same images -- cosine similarity of every
feature row ≥ ``MIN_COSINE`` -- and for detection quality, the ROC-AUC of a probe (logistic
regression on L2-normalised features, fitted on half of each check set's images, scored on the other
half) moves by at most ``MAX_AUC_DRIFT`` on every set (CIFAKE and sd_art in the documented
command). A copy that fails is recorded as refused in its report, with the figures, and an encoder
naming it refuses to run (one line with those figures) instead of silently using worse features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)

METHODS = ("dynamic", "static")
#: every feature row of the int8 copy must point where the fp32 row points, to this cosine
MIN_COSINE = 0.99
#: a probe's ROC-AUC on each check set may move by at most this much
MAX_AUC_DRIFT = 0.005
#: bump when the quantisation recipe changes (part of the cached file's key)
RECIPE_VERSION = 1
_OPS = ["MatMul", "Gemm", "Conv"]


def quantised_path(
    source_sha256: str, method: str, weights_dir: str | os.PathLike, spec: str = "", calibration: str = ""
) -> Path:
    """Where the int8 copy of a file (by its sha256, what was exposed in ``spec``) is cached."""
    if method not in METHODS:
        raise FidBenchError(f"model.quantise must be null, dynamic or static, got {method!r}")
    key_text = "\n".join([spec, method, calibration if method == "static" else "", f"v{RECIPE_VERSION}"])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    return (
        Path(weights_dir).expanduser() / "onnx" / "derived" / f"{source_sha256[:16]}-int8-{method}-{key}.onnx"
    )


def report_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(report_path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_report(path: Path, report: dict[str, Any]) -> None:
    part = report_path(path).with_name(report_path(path).name + ".part")
    part.write_text(json.dumps(report, indent=2, sort_keys=True))
    os.replace(part, report_path(path))


def quantise(
    source: str | os.PathLike,
    dest: Path,
    method: str,
    input_name: str | None = None,
    calibration: Iterable[np.ndarray] | None = None,
) -> Path:
    """Write the int8 copy of ``source`` to ``dest`` (atomically, under a lock; kept when present).

    ``calibration`` (static only): batches of normalised float32 ``N x 3 x H x W`` inputs."""
    if dest.is_file():
        return dest
    from filelock import FileLock
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method == "static" and calibration is None:
        raise FidBenchError(
            f"{dest.name}: a static int8 copy needs calibration images; make it with "
            "`fid-bench quantise-onnx model=... --method static --calibrate DIR`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():
            return dest
        part = dest.with_name(dest.stem + ".part.onnx")
        try:
            if method == "dynamic":
                quantize_dynamic(
                    str(source),
                    str(part),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=_OPS,
                )
            else:
                quantize_static(
                    str(source),
                    str(part),
                    _Reader(_input_of(source, input_name), calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8,
                    op_types_to_quantize=_OPS,
                )
            os.replace(part, dest)
        except FidBenchError:
            raise
        except Exception as err:  # noqa: BLE001 - onnxruntime.quantization raises many types
            raise FidBenchError(
                f"{Path(source).name}: {method} int8 quantisation failed ({one_line(err, 200)})"
            ) from None
        finally:
            part.unlink(missing_ok=True)
    log.info("onnx: %s quantised to int8 (%s): %s", Path(source).name, method, dest)
    return dest


def _input_of(path: str | os.PathLike, input_name: str | None) -> str:
    if input_name:
        return input_name
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    images = [
        i.name for i in model.graph.input if i.name not in weights and len(i.type.tensor_type.shape.dim) == 4
    ]
    if len(images) != 1:
        raise FidBenchError(
            f"{Path(path).name}: cannot tell the image input to calibrate; set model.input_name"
        )
    return images[0]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an iterable of normalised batches."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self.name = name
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:  # one pass is all min-max calibration needs
        pass


# ----------------------------------------------------------------------------- checks
def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def probe_auc(feats: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """ROC-AUC of a logistic regression on L2-normalised rows, fitted on one half, scored on the other.

    The halves are drawn with ``seed`` (the same rows for the fp32 and the int8 features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    fit, score = order[: len(order) // 2], order[len(order) // 2 :]
    if len(set(labels[fit])) < 2 or len(set(labels[score])) < 2:
        raise FidBenchError("quantise check: each half of a check set needs both classes")
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x[fit], labels[fit])
    return float(roc_auc_score(labels[score], clf.predict_proba(x[score])[:, 1]))


def check(
    fp32: Callable[[Sequence[str]], np.ndarray],
    int8: Callable[[Sequence[str]], np.ndarray],
    sets: dict[str, tuple[Sequence[str], np.ndarray]],
) -> dict[str, Any]:
    """Compare two feature functions (paths -> rows) on named check sets ``{name: (paths, labels)}``.

    Returns the figures and ``passed`` (every row's cosine ≥ ``MIN_COSINE`` and every set's
    |ROC-AUC drift| ≤ ``MAX_AUC_DRIFT``)."""
    out: dict[str, Any] = {"min_cosine_required": MIN_COSINE, "max_auc_drift": MAX_AUC_DRIFT, "sets": {}}
    worst_cos, passed = 1.0, True
    for name, (paths, labels) in sets.items():
        a, b = fp32(paths), int8(paths)
        cos = row_cosines(a, b)
        auc_a, auc_b = probe_auc(a, labels), probe_auc(b, labels)
        drift = auc_b - auc_a
        ok = bool(cos.min() >= MIN_COSINE and abs(drift) <= MAX_AUC_DRIFT)
        out["sets"][name] = {
            "n": len(paths),
            "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()),
            "fp32_roc_auc": auc_a,
            "int8_roc_auc": auc_b,
            "auc_drift": drift,
            "passed": ok,
        }
        worst_cos = min(worst_cos, float(cos.min()))
        passed = passed and ok
    out["min_cosine"] = worst_cos
    out["passed"] = passed
    return out


def summary(report: dict[str, Any]) -> str:
    """One line: the verdict and the figures of every check set."""
    parts = [
        f"{name}: min cosine {s['min_cosine']:.4f}, ROC-AUC {s['fp32_roc_auc']:.4f} -> {s['int8_roc_auc']:.4f} "
        f"({s['auc_drift']:+.4f})"
        for name, s in (report.get("sets") or {}).items()
    ]
    verdict = "passed" if report.get("passed") else "refused"
    return f"{verdict} (cosine >= {MIN_COSINE} per row, |ROC-AUC drift| <= {MAX_AUC_DRIFT}): " + "; ".join(
        parts
    )


# ----------------------------------------------------------------------------- make and check
def labelled_images(folder: str | os.PathLike, n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n / 2`` images (by name) of ``folder``'s ``real`` and ``fake`` subfolders (any case)."""
    root = Path(folder).expanduser()
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    if "real" not in subs or "fake" not in subs:
        raise FidBenchError(f"{folder}: a check set needs real/ and fake/ subfolders (any case)")
    paths: list[str] = []
    labels: list[int] = []
    for label, sub in ((0, subs["real"]), (1, subs["fake"])):
        files = sorted(str(p) for p in sub.iterdir() if p.is_file())[: n // 2]
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels)


def encode_paths(encoder: Any, paths: Sequence[str], batch: int = 32) -> tuple[np.ndarray, float]:
    """Features of ``paths`` through ``encoder`` (decoded here), and the seconds ``encode`` took."""
    import time

    from fid_bench.data.decode import load_rgb

    rows, seconds = [], 0.0
    for i in range(0, len(paths), batch):
        pixels = np.stack([encoder.transform(load_rgb(p)) for p in paths[i : i + batch]])
        t0 = time.perf_counter()
        rows.append(np.asarray(encoder.encode(pixels), dtype=np.float32))
        seconds += time.perf_counter() - t0
    return np.concatenate(rows), seconds


def make_checked(
    fp32: Any,
    method: str,
    sets: dict[str, tuple[Sequence[str], np.ndarray]],
    calibration: Sequence[str] = (),
    force: bool = False,
    fp32_memo: dict[str, tuple[np.ndarray, float]] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Make the ``method`` int8 copy of ``fp32``'s file (an ``OnnxEncoder`` without ``quantise``), check
    it on ``sets`` and write the report next to it. A refused copy stays, marked refused: encoders
    naming it stop with the figures. ``calibration``: image paths (static). ``fp32_memo``: fp32
    features and seconds by check set, shared between calls (the fp32 side is the same for every method)."""
    import copy
    import time

    from fid_bench.backbones.weights import file_sha256

    if fp32.quantise:
        raise FidBenchError("quantise-onnx: give the fp32 model (model.quantise=null)")
    fp32.prepare("cpu")
    fp32.load()
    int8 = copy.copy(fp32)
    int8._model = None
    int8._loaded_info = {}
    int8.quantise = method
    int8._checking = True  # no "unchecked" warning: this is the check
    dest = int8.quantised_file()
    if force:
        dest.unlink(missing_ok=True)
        report_path(dest).unlink(missing_ok=True)
    started = time.perf_counter()
    batches = None
    calib_key = ""
    if method == "static":
        if not calibration:
            raise FidBenchError(
                "quantise-onnx --method static needs --calibrate DIR (a few hundred training images)"
            )
        from fid_bench.data.decode import load_rgb

        calib_key = hashlib.sha256("\n".join(sorted(calibration)).encode()).hexdigest()[:12]
        batches = (
            fp32.normalise(np.stack([fp32.transform(load_rgb(p)) for p in calibration[i : i + 16]]))
            for i in range(0, len(calibration), 16)
        )
    if not dest.is_file():
        quantise(fp32.file_path(), dest, method, fp32.input_name, batches)
    made = time.perf_counter() - started
    int8._io = {}
    report_path(dest).unlink(missing_ok=True)  # the check below decides afresh
    int8.load()
    times: dict[str, float] = {"fp32": 0.0, "int8": 0.0}
    n_timed = 0

    memo = {} if fp32_memo is None else fp32_memo

    def timed(enc: Any, key: str) -> Callable[[Sequence[str]], np.ndarray]:
        def run(paths: Sequence[str]) -> np.ndarray:
            nonlocal n_timed
            memo_key = hashlib.sha256("\n".join(paths).encode()).hexdigest()
            if key == "fp32" and memo_key in memo:
                feats, seconds = memo[memo_key]
            else:
                feats, seconds = encode_paths(enc, paths)
            if key == "fp32":
                memo[memo_key] = (feats, seconds)
            times[key] += seconds
            n_timed += len(paths) if key == "fp32" else 0
            return feats

        return run

    report = check(timed(fp32, "fp32"), timed(int8, "int8"), sets)
    report.update(
        method=method,
        source=str(fp32.file_path()),
        source_sha256=fp32.file_sha256(),
        sha256=file_sha256(dest),
        calibration={"n": len(calibration), "paths_sha256": calib_key} if method == "static" else None,
        seconds_to_make=made,
        fp32_images_per_s=n_timed / times["fp32"] if times["fp32"] else 0.0,
        int8_images_per_s=n_timed / times["int8"] if times["int8"] else 0.0,
        threads=fp32.threads,
        load_average=list(os.getloadavg()),
    )
    report["speedup"] = report["int8_images_per_s"] / max(report["fp32_images_per_s"], 1e-9)
    write_report(dest, report)
    return dest, report
