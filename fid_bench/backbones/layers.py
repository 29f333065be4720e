"""Intermediate transformer blocks as features: the ``model.layers`` / ``model.pool`` options.

``layers``: ``null`` (the encoder's own output), ``all`` (every block) or a list of block indices
(0-based; negative ones count from the last block). ``pool``: how a block's ``N x T x D`` tokens
become a vector -- ``cls`` (the first token), ``mean`` (the mean of the tokens after the first) or
``both`` (``cls`` then ``mean``). A feature row is, block by block in the order given, each pool in
turn: ``len(blocks) * len(pools) * D`` values. Its ``layout`` (``[[block, pool], ...]``) names the
``D``-wide slices, and ``features.select`` picks blocks out of a cached row by it.

Both the ONNX path (block outputs added as graph outputs) and the torch path (forward hooks on the
blocks) pool the same way, so one set of weights gives the same features either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fid_bench.errors import FidBenchError

POOLS = ("cls", "mean")


def layer_spec(layers: Any) -> str | list[int] | None:
    """``model.layers`` checked: ``None``, ``"all"`` or a non-empty list of distinct ints."""
    if layers is None:
        return None
    if isinstance(layers, str):
        if layers.strip().lower() == "all":
            return "all"
        raise FidBenchError(f"model.layers must be null, all or a list of block indices, got {layers!r}")
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        layers = [layers]
    try:
        out = [int(v) for v in layers]
        ok = all(not isinstance(v, bool) and int(v) == v for v in layers)
    except (TypeError, ValueError):
        ok, out = False, []
    if not ok or not out or len(set(out)) != len(out):
        raise FidBenchError(
            f"model.layers must be null, all or a list of distinct block indices, got {layers!r}"
        )
    return out


def pool_spec(pool: Any) -> list[str]:
    """``model.pool`` checked: ``cls``, ``mean``, ``both`` or a list of them -> the pools in order."""
    if pool is None:
        return ["cls"]
    if isinstance(pool, str):
        names = ["cls", "mean"] if pool.strip().lower() == "both" else [pool.strip().lower()]
    else:
        names = [str(p).strip().lower() for p in pool]
    if not names or len(set(names)) != len(names) or any(p not in POOLS for p in names):
        raise FidBenchError(f"model.pool must be cls, mean, both or a list of them, got {pool!r}")
    return names


def resolve_blocks(spec: str | list[int], n_blocks: int, where: str) -> list[int]:
    """The block indices ``spec`` means for a network of ``n_blocks`` blocks (negatives from the end)."""
    if spec == "all":
        return list(range(n_blocks))
    out = []
    for b in spec:
        i = b + n_blocks if b < 0 else b
        if not 0 <= i < n_blocks:
            raise FidBenchError(f"model.layers: block {b} does not exist; {where} has {n_blocks} blocks")
        out.append(i)
    if len(set(out)) != len(out):
        raise FidBenchError(f"model.layers={spec} names one block twice ({where} has {n_blocks} blocks)")
    return out


def pool_tokens(hidden: np.ndarray, pools: Sequence[str]) -> np.ndarray:
    """``N x T x D`` tokens -> ``N x (len(pools) * D)``: the first token and/or the mean of the rest."""
    hidden = np.asarray(hidden, dtype=np.float32)
    if hidden.ndim != 3 or hidden.shape[1] < 2:
        raise FidBenchError(
            f"a block output of shape {list(hidden.shape)} is not N x tokens x width (with a CLS token)"
        )
    parts = [hidden[:, 0] if p == "cls" else hidden[:, 1:].mean(axis=1) for p in pools]
    return np.concatenate(parts, axis=1)


def layout(blocks: Sequence[int], pools: Sequence[str]) -> list[list[Any]]:
    """``[[block, pool], ...]`` in feature-row order."""
    return [[int(b), str(p)] for b in blocks for p in pools]


def select_columns(row_layout: Sequence[Sequence[Any]], dim: int, select: Any) -> np.ndarray:
    """The columns of a cached row (``dim`` wide, laid out as ``row_layout``) holding the ``select`` blocks.

    ``select``: block indices (every pool of each), or ``"B:pool"`` strings for one pool of one block.
    """
    if not row_layout or dim % len(row_layout):
        raise FidBenchError(f"features.select: cached rows of {dim} values do not split into {row_layout}")
    width = dim // len(row_layout)
    items = [select] if isinstance(select, (int, str)) else list(select or [])
    if not items:
        raise FidBenchError("features.select must name at least one block")
    blocks = sorted({int(b) for b, _ in row_layout})
    cols: list[np.ndarray] = []
    for item in items:
        block_s, _, pool = str(item).partition(":")
        try:
            block = int(block_s)
        except ValueError:
            raise FidBenchError(
                f"features.select: {item!r} is not a block index (or B:cls, B:mean)"
            ) from None
        if block < 0 and blocks:
            block += max(blocks) + 1
        hits = [i for i, (b, p) in enumerate(row_layout) if b == block and (not pool or p == pool)]
        if not hits:
            raise FidBenchError(
                f"features.select: {item!r} is not among the extracted blocks {blocks} "
                f"(pools {sorted({p for _, p in row_layout})}); extract it with model.layers"
            )
        cols += [np.arange(i * width, (i + 1) * width) for i in hits]
    return np.concatenate(cols)


def find_torch_blocks(model: Any) -> tuple[list[Any], bool]:
    """The transformer blocks of a torch vision tower, and whether their outputs are ``T x N x D``.

    timm ViTs keep them in ``blocks``, open_clip towers in ``transformer.resblocks`` (sequence-first
    unless the transformer says ``batch_first``).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(blocks, "__len__") and len(blocks):
        return list(blocks), False
    transformer = getattr(model, "transformer", None)
    res = getattr(transformer, "resblocks", None)
    if res is not None and len(res):
        return list(res), not bool(getattr(transformer, "batch_first", True))
    raise FidBenchError(
        f"model.layers: {type(model).__name__} has no transformer blocks (blocks or transformer.resblocks)"
    )
