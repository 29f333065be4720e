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
from collections.abc import Sequence
from pathlib import Path

from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)


def exposed_path(source_sha256: str, outputs: Sequence[str], weights_dir: str | os.PathLike) -> Path:
    """Where the copy of a file (by its sha256) exposing ``outputs`` is cached."""
    key = hashlib.sha256("\n".join(outputs).encode()).hexdigest()[:12]
    return Path(weights_dir).expanduser() / "onnx" / "derived" / f"{source_sha256[:16]}-expose-{key}.onnx"


def expose(
    path: str | os.PathLike, outputs: Sequence[str], source_sha256: str, weights_dir: str | os.PathLike
) -> Path:
    """The cached copy of ``path`` whose outputs are the inner tensors ``outputs`` (written when absent)."""
    if not outputs:
        raise FidBenchError("expose: name at least one inner tensor")
    dest = exposed_path(source_sha256, outputs, weights_dir)
    if dest.is_file():
        return dest
    import onnx
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():
            return dest
        try:
            model = onnx.load(str(path))
        except Exception as err:  # noqa: BLE001 - onnx raises several types for bad files
            raise FidBenchError(f"{path}: not a readable ONNX file ({one_line(err)})") from None
        produced = {o for node in model.graph.node for o in node.output}
        absent = [name for name in outputs if name not in produced]
        if absent:
            raise FidBenchError(
                f"{Path(path).name}: no inner tensor {absent[0]!r} (model.expose); "
                f"e.g. {', '.join(sorted(produced)[:3])}"
            )
        _cut(model, outputs)
        part = dest.with_name(dest.name + ".part")
        onnx.save(model, str(part))
        os.replace(part, dest)
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
