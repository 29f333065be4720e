"""Transformer block outputs of an ONNX encoder: found in the graph, exposed in a derived file.

Finding them does not rely on node names (an exporter may drop them, as torch's ``torch.export``
based one does): a pre-norm transformer block adds two branches to its input, ``x + attn(x)`` then
``+ mlp(...)``, so the residual stream is the longest chain of ``Add`` nodes each taking the
previous one's output. Counted from its end, every second ``Add`` of that chain is a block's output
(the chain may start with one more ``Add``: the position embedding). This holds for OpenAI CLIP as
Hugging Face exports it (the int8 ``clip_vit_b16_int8`` file), for timm ViTs and open_clip towers
as ``fid-bench export-onnx`` writes them, with either exporter. A graph without such a chain
(a CNN) is a one-line error saying what was found.

The derived file is the source graph with those tensors added as graph outputs, written once into
the weights cache as ``onnx/derived/<source sha256[:16]>-blocks-<i-j-...>.onnx`` (the source's
content and the block list are its whole identity), so one session run yields every block.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)

#: names exporters give block scopes (only used to describe what was found)
_BLOCK_NAME = re.compile(r"(?:layers|blocks|resblocks|layer)\.(\d+)")


def residual_chain(graph: Any) -> list[Any]:
    """The longest chain of ``Add`` nodes each consuming the previous one's output (topological order)."""
    producer: dict[str, Any] = {}
    length: dict[int, int] = {}
    parent: dict[int, Any] = {}
    best: Any = None
    for node in graph.node:  # ONNX requires nodes in topological order
        if node.op_type == "Add":
            preds = [producer[i] for i in node.input if i in producer and producer[i].op_type == "Add"]
            prev = max(preds, key=lambda n: length[id(n)], default=None)
            length[id(node)] = 1 + (length[id(prev)] if prev is not None else 0)
            parent[id(node)] = prev
            if best is None or length[id(node)] > length[id(best)]:
                best = node
        for out in node.output:
            producer[out] = node
    chain = []
    while best is not None:
        chain.append(best)
        best = parent[id(best)]
    return chain[::-1]


def block_outputs(model: Any, name: str = "the graph") -> list[str]:
    """The tensor names of the blocks' outputs, block 0 first; a one-line error when there are none."""
    chain = residual_chain(model.graph)
    n_blocks = len(chain) // 2
    if n_blocks < 1:
        scopes = sorted(
            {int(m.group(1)) for n in model.graph.node for m in [_BLOCK_NAME.search(n.name)] if m}
        )
        named = f"nodes named for blocks {scopes[0]}..{scopes[-1]}" if scopes else "no nodes named for blocks"
        raise FidBenchError(
            f"{name}: model.layers needs transformer blocks, but the graph has no residual stream "
            f"(longest chain of Add nodes: {len(chain)}; {named}); use model.layers=null"
        )
    return [chain[len(chain) - 1 - 2 * (n_blocks - 1 - i)].output[0] for i in range(n_blocks)]


def derived_path(weights_dir: str | os.PathLike, source_sha256: str, blocks: list[int]) -> Path:
    """Where the derived file of ``source_sha256`` exposing ``blocks`` lives in the weights cache."""
    tag = "-".join(str(b) for b in blocks)
    return Path(weights_dir).expanduser() / "onnx" / "derived" / f"{source_sha256[:16]}-blocks-{tag}.onnx"


def derived_file(
    source: Path, source_sha256: str, blocks: list[int] | str, weights_dir: str | os.PathLike
) -> tuple[Path, list[int], list[str], int]:
    """The derived file exposing ``blocks`` (``"all"`` or indices) of ``source``, written when absent.

    Returns ``(path, blocks resolved, their output names, number of blocks in the graph)``.
    """
    import onnx

    from fid_bench.backbones.layers import resolve_blocks
    from fid_bench.backbones.onnx_graph import load_model, write_derived

    model = load_model(source)
    names = block_outputs(model, source.name)
    chosen = resolve_blocks(blocks, len(names), source.name)
    outs = [names[b] for b in chosen]
    path = derived_path(weights_dir, source_sha256, chosen)

    def add_outputs(model: Any) -> None:
        existing = {o.name for o in model.graph.output}
        types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
        for out in outs:
            if out not in existing:
                elem = types.get(out) or onnx.TensorProto.FLOAT
                model.graph.output.append(onnx.helper.make_tensor_value_info(out, elem, None))

    if write_derived(source, path, add_outputs, model=model):
        log.info("onnx: wrote %s (blocks %s of %d as outputs)", path, chosen, len(names))
    return path, chosen, outs, len(names)
