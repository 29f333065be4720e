"""An ONNX graph cut at inner tensors: a copy whose outputs are tensors the original computes inside.

A packaged file may carry a useful encoder under a head we do not want (DINOv2 under a saliency
decoder): ``expose`` writes a copy whose graph outputs are the named inner tensors (e.g. the
backbone's final layer norm, or every block's output), pruned to the nodes they need, so ONNX Runtime
returns hidden states instead of the head's output. The copy is cached next to the weights, named by
the source file's sha256 and the exposed names, and written once (atomically, under a lock).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)


def exposed_path(source_sha256: str, outputs: Sequence[str], weights_dir: str | os.PathLike) -> Path:
    """Where the copy of a file (by its sha256) exposing ``outputs`` is cached."""
    key = hashlib.sha256("\n".join(outputs).encode()).hexdigest()[:12]
    return Path(weights_dir).expanduser() / "onnx" / "derived" / f"{source_sha256[:16]}-expose-{key}.onnx"


def load_model(path: str | os.PathLike) -> Any:
    """The ONNX model in ``path``; an unreadable file is a one-line error."""
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - onnx raises several types for bad files
        raise FidBenchError(f"{path}: not a readable ONNX file ({one_line(err)})") from None


#: operators that quantise activations with one scale over the whole input tensor, computed at run
#: time: over a batch, so an image's result depends on the other images of its batch
DYNAMIC_QUANTISERS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"})
_dynamic: dict[tuple[str, int, int], bool] = {}


def quantises_dynamically(path: str | os.PathLike) -> bool:
    """Whether the graph in ``path`` quantises activations at run time (``DYNAMIC_QUANTISERS``);
    read once per file and process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _dynamic:
        _dynamic[key] = any(n.op_type in DYNAMIC_QUANTISERS for n in load_model(path).graph.node)
    return _dynamic[key]


def write_derived(
    source: str | os.PathLike, dest: Path, edit: Callable[[Any], None], *, model: Any = None
) -> bool:
    """Write ``dest`` once: ``source``'s model (or ``model``, already loaded from it) changed in place by
    ``edit``, saved under a lock and renamed into place, so concurrent jobs never read half a file.
    Returns whether this call wrote it (False: it was there)."""
    if dest.is_file():
        return False
    import onnx
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():
            return False
        model = load_model(source) if model is None else model
        edit(model)
        part = dest.with_name(dest.name + ".part")
        try:
            onnx.save(model, str(part))
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    return True


def expose(
    path: str | os.PathLike, outputs: Sequence[str], source_sha256: str, weights_dir: str | os.PathLike
) -> Path:
    """The cached copy of ``path`` whose outputs are the inner tensors ``outputs`` (written when absent)."""
    if not outputs:
        raise FidBenchError("expose: name at least one inner tensor")
    dest = exposed_path(source_sha256, outputs, weights_dir)

    def cut(model: Any) -> None:
        produced = {o for node in model.graph.node for o in node.output}
        absent = [name for name in outputs if name not in produced]
        if absent:
            raise FidBenchError(
                f"{Path(path).name}: no inner tensor {absent[0]!r} (model.expose); "
                f"e.g. {', '.join(sorted(produced)[:3])}"
            )
        _cut(model, outputs)

    if write_derived(path, dest, cut):
        log.info("onnx: %s exposes %s (%s)", Path(path).name, ", ".join(outputs), dest)
    return dest


def _cut(model: object, outputs: Sequence[str]) -> None:
    """Make ``outputs`` the graph's outputs and drop every node and initialiser they do not need."""
    import onnx

    graph = model.graph  # type: ignore[attr-defined]
    needed = set(outputs)
    keep = []
    for node in reversed(graph.node):  # nodes are topologically sorted: walk back from the outputs
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    weights = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    inputs = [i for i in graph.input if i.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    # rank and size are left unknown: ONNX Runtime reports the real shape of what it returns
    graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs
    )


#: the input of a graph with the normalisation fused in (``with_uint8_input``): ``uint8 [N, H, W, 3]``
UINT8_INPUT = "pixels_uint8"
#: bump when the prepended nodes change (the derived file's name carries it)
FUSE_VERSION = 1


def uint8_input_path(
    run_path: str | os.PathLike,
    source_sha256: str,
    input_name: str,
    scale: Sequence[float],
    offset: Sequence[float],
    weights_dir: str | os.PathLike,
) -> Path:
    """Where the copy of ``run_path`` taking ``uint8`` pixels is cached (see ``with_uint8_input``)."""
    spec = "\n".join(
        [Path(run_path).name, input_name, *(f"{v:.9e}" for v in (*scale, *offset)), f"v{FUSE_VERSION}"]
    )
    key = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return Path(weights_dir).expanduser() / "onnx" / "derived" / f"{source_sha256[:16]}-u8-{key}.onnx"


def with_uint8_input(
    run_path: str | os.PathLike,
    source_sha256: str,
    input_name: str | None,
    scale: Sequence[float],
    offset: Sequence[float],
    weights_dir: str | os.PathLike,
) -> Path:
    """A cached copy of ``run_path`` that takes ``uint8 [N, H, W, 3]`` pixels (input ``UINT8_INPUT``).

    ``Cast`` to float, ``Mul`` by ``scale`` and ``Add`` ``offset`` (per channel), ``Transpose`` to
    ``N x 3 x H x W`` are prepended to the graph and feed its image input: the same float32 operations,
    in the same order, as ``OnnxEncoder.normalise`` does in numpy, run by the session's threads on a
    quarter of the bytes, with no per-batch work left in Python. ``input_name``: the image input
    (``None``: the single 4-D input). The copy is keyed by the source's sha256, the file it is made
    from (a cut or block-exposing copy has its own name) and the constants.
    """
    import numpy as np

    if input_name is None:
        input_name = ""
    dest = uint8_input_path(run_path, source_sha256, input_name or "auto", scale, offset, weights_dir)

    def prepend(model: Any) -> None:
        from onnx import TensorProto, helper, numpy_helper

        graph = model.graph
        weights = {t.name for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in weights]
        if input_name:
            match = [i for i in inputs if i.name == input_name]
            if not match:
                raise FidBenchError(
                    f"{Path(run_path).name}: no input {input_name!r}; it has {', '.join(i.name for i in inputs)}"
                )
        else:
            match = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
        if len(match) != 1:
            raise FidBenchError(
                f"{Path(run_path).name}: cannot tell the image input among "
                f"{', '.join(i.name for i in inputs)}; set model.input_name"
            )
        image = match[0]
        dims = list(image.type.tensor_type.shape.dim)

        def dim(d: Any) -> Any:
            return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)

        n, _, h, w = (dim(d) for d in dims)
        new_input = helper.make_tensor_value_info(UINT8_INPUT, TensorProto.UINT8, [n, h, w, 3])
        prefix = "fid_bench_u8"
        consts = [
            numpy_helper.from_array(np.asarray(scale, dtype=np.float32), f"{prefix}/scale"),
            numpy_helper.from_array(np.asarray(offset, dtype=np.float32), f"{prefix}/offset"),
        ]
        nodes = [
            helper.make_node(
                "Cast", [UINT8_INPUT], [f"{prefix}/float"], to=TensorProto.FLOAT, name=f"{prefix}/Cast"
            ),
            helper.make_node(
                "Mul", [f"{prefix}/float", f"{prefix}/scale"], [f"{prefix}/scaled"], name=f"{prefix}/Mul"
            ),
            helper.make_node(
                "Add", [f"{prefix}/scaled", f"{prefix}/offset"], [f"{prefix}/nhwc"], name=f"{prefix}/Add"
            ),
            helper.make_node(
                "Transpose", [f"{prefix}/nhwc"], [image.name], perm=[0, 3, 1, 2], name=f"{prefix}/Transpose"
            ),
        ]
        kept = [i for i in graph.input if i.name != image.name]
        del graph.input[:]
        graph.input.extend([new_input, *kept])
        graph.initializer.extend(consts)
        old = list(graph.node)
        del graph.node[:]
        graph.node.extend([*nodes, *old])

    if write_derived(run_path, dest, prepend):
        log.info("onnx: %s takes uint8 pixels, normalisation fused in (%s)", Path(run_path).name, dest)
    return dest
