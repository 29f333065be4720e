"""Near-duplicates: a 64-bit perceptual hash per distinct file, near pairs, confirmation, groups.

Owns ``perceptual_hash`` (32x32 grey thumbnail -> DCT -> 64 bits), ``near_pairs`` (all pairs
within a Hamming distance, found through shared chunks of the hash), ``confirm_pairs`` (candidate
pairs kept only when their thumbnails also agree: nearly flat pictures collide in a 64-bit hash)
and ``near_duplicates``, which groups the confirmed pairs of a samples table into connected
components and counts the test rows with a near-identical train image.

May import: ``fid_bench.data``, ``fid_bench.audit.scan``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fid_bench.audit.scan import cached_by_sha1
from fid_bench.data.decode import load_rgb
from fid_bench.errors import one_line

#: the largest Hamming distance the near-duplicate check accepts (of 64 bits)
MAX_NEAR_DUP_THRESHOLD = 32
NEAR_COLUMNS = ["group", "n_files", "n_rows", "labels", "splits", "sha1s", "paths"]


def thumbnail(path: str) -> np.ndarray:
    """32x32 grey version of the decoded image (float64), what the perceptual hash looks at."""
    from PIL import Image

    grey = load_rgb(path).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def perceptual_hash(path: str) -> int:
    """64-bit DCT hash: 32x32 grey -> 2-D DCT -> 8x8 lowest frequencies -> bit = above their median.

    The DC term is left out of the median so overall brightness does not move every bit. The 63
    other bits are split at their median, so every hash has the same number of ones and Hamming
    distances between hashes are even.
    """
    a = thumbnail(path)
    d = _dct_matrix(32)
    low = (d @ a @ d.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits.astype(np.uint8), bitorder="little").view(np.uint64)[0])


@lru_cache(maxsize=2)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


def phash_chunk(paths: list[str]) -> list[tuple[int, str]]:
    """(hash as int64, error) per path; a module-level function, so worker processes can run it."""
    out = []
    for p in paths:
        try:
            h = perceptual_hash(p)
            out.append((h - (1 << 64) if h >= 1 << 63 else h, ""))  # stored as int64 (parquet-friendly)
        except Exception as err:  # noqa: BLE001 - an undecodable file is counted, never raised
            out.append((0, one_line(err)[:200]))
    return out


def confirm_pairs(pairs: np.ndarray, paths: Sequence[str], min_corr: float = 0.6) -> np.ndarray:
    """Keep the hash-near pairs whose 32x32 grey thumbnails also agree (Pearson r >= ``min_corr``).

    A 64-bit hash of nearly flat pictures (a small object on an even sky) is decided by faint
    shading, so unrelated images can collide: on CIFAKE at distance <= 4, every hash group mixing
    real and generated images was such a collision (r 0.30..0.58), while the edited copies of one
    photo inspected had r >= 0.6. Two flat thumbnails (no variance) agree when their mean grey levels
    differ by at most 4.
    """
    if len(pairs) == 0:
        return pairs
    involved = np.unique(pairs)
    thumbs: dict[int, np.ndarray | None] = {}
    for i in involved:
        try:
            thumbs[int(i)] = thumbnail(paths[int(i)]).ravel()
        except Exception:  # noqa: BLE001 - a file that broke since hashing just drops its pairs
            thumbs[int(i)] = None
    keep = np.zeros(len(pairs), dtype=bool)
    for k, (i, j) in enumerate(pairs.tolist()):
        a, b = thumbs[i], thumbs[j]
        if a is None or b is None:
            continue
        if a.std() < 1e-6 or b.std() < 1e-6:
            keep[k] = abs(a.mean() - b.mean()) <= 4.0
        else:
            keep[k] = float(np.corrcoef(a, b)[0, 1]) >= min_corr
    return pairs[keep]


def near_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """All pairs (i < j) of 64-bit hashes within Hamming distance ``threshold``, shape [k, 2].

    Pigeonhole: split the 64 bits into ``threshold + 1`` chunks; two hashes that differ in at most
    ``threshold`` bits agree exactly on at least one chunk. So only hashes sharing a chunk value are
    compared, instead of all n^2 pairs.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    bounds = np.linspace(0, 64, threshold + 2).astype(int)
    found = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        k = key[order]
        edges = np.flatnonzero(np.diff(k)) + 1
        starts, ends = np.r_[0, edges], np.r_[edges, k.size]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            members = order[s:e]
            for b in range(0, members.size, 2048):  # bounded blocks: one huge bucket stays in memory
                rows = members[b : b + 2048]
                dist = np.bitwise_count(h[rows][:, None] ^ h[members][None, :])
                i, j = np.nonzero(dist <= threshold)
                a, c = rows[i], members[j]
                keep = a < c
                found.append(np.stack([a[keep], c[keep]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def near_duplicates(
    table: pd.DataFrame, threshold: int, workers: int, cache: Path | None
) -> tuple[pd.DataFrame, int]:
    """(groups of near-identical distinct files, test rows with a near-identical train image).

    ``table`` is a normalised samples table (sha1 and path as strings, "" when missing); groups
    have the columns ``NEAR_COLUMNS``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    hashed = table[(table["sha1"] != "") & (table["path"] != "")]
    reps = hashed.drop_duplicates("sha1")[["sha1", "path"]].reset_index(drop=True)
    ph = cached_by_sha1("phash", reps, ["phash", "error"], phash_chunk, workers, cache)
    ok = (ph["error"] == "").to_numpy()
    reps = reps[ok].reset_index(drop=True)
    hashes = ph["phash"].to_numpy()[ok].astype(np.int64).view(np.uint64)
    pairs = confirm_pairs(near_pairs(hashes, threshold), reps["path"].tolist())
    if len(pairs) == 0:
        return pd.DataFrame(columns=NEAR_COLUMNS), 0
    n = len(reps)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    reps["near_group"] = comp
    grouped = reps[sizes[comp] > 1]
    rows = hashed.drop(columns="group").merge(grouped[["sha1", "near_group"]], on="sha1")
    out = []
    for gid, g in rows.sort_values("path", kind="stable").groupby("near_group"):
        first = g.drop_duplicates("sha1")
        out.append(
            (int(gid), len(first), len(g), g["label"].tolist(), g["split"].tolist(), first["sha1"].tolist(),
             first["path"].tolist())
        )  # fmt: skip
    near = pd.DataFrame(out, columns=NEAR_COLUMNS)
    # a test row leaks when its group holds a train row with different bytes (exact copies are counted apart)
    train_groups = rows[rows["split"] == "train"][["near_group", "sha1"]]
    test_rows = rows[rows["split"] == "test"]
    leaky = test_rows.merge(train_groups, on="near_group", suffixes=("", "_train"))
    leaky = leaky[leaky["sha1"] != leaky["sha1_train"]]
    return near, int(leaky["id"].nunique())
