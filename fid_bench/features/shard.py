"""Extraction split across processes or nodes: ``features.shard=i features.num_shards=n``.

A sharded job extracts only its share of the data set's labelled images into the content-addressed
cache and ends (no classifier, no metrics beyond the extraction's own). Shares are decided by
content, not position: image ``sha1`` goes to shard ``int(sha1[:15], 16) % n``, so every shard agrees
on the split whatever order or subset of rows it reads, duplicates fall in one shard, and the
shards together cover every image exactly once. Run them with any Hydra launcher, then the real
sweep finds every feature cached::

    python -m fid_bench -m hydra/launcher=joblib hydra.launcher.n_jobs=4 model=clip_vit_b16_int8 \\
        features.num_shards=4 features.shard=0,1,2,3
    python -m fid_bench -m model=clip_vit_b16_int8 classifier=logreg,lightgbm,knn   # zero extraction
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.data.samples import LABELLED_SPLITS
from fid_bench.errors import FidBenchError
from fid_bench.features.aligned import with_alignment
from fid_bench.features.concat import ConcatEncoder, expand_members, extract_concat
from fid_bench.features.encoders import build_encoder
from fid_bench.features.extract import extract_features

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from fid_bench.data.samples import Samples

log = logging.getLogger(__name__)


def shard_settings(cfg: DictConfig) -> tuple[int, int] | None:
    """``(shard, num_shards)`` when the job is one shard of a split extraction, else ``None``."""
    from omegaconf import OmegaConf

    n = OmegaConf.select(cfg, "features.num_shards", default=1)
    i = OmegaConf.select(cfg, "features.shard", default=None)
    if n in (None, 1) and i in (None, 0):
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FidBenchError(f"features.num_shards must be a positive integer, got {n!r}")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
        raise FidBenchError(
            f"features.shard must be an integer in [0, {n - 1}] with num_shards={n}, got {i!r}"
        )
    if OmegaConf.select(cfg, "model.backbone") is None:
        raise FidBenchError(
            f"features.num_shards: model={OmegaConf.select(cfg, 'model.name')} has no frozen encoder to extract with"
        )
    return i, n


def shard_of(sha1s: list[str], num_shards: int) -> np.ndarray:
    """The shard of each content hash."""
    return np.array([int(s[:15], 16) % num_shards for s in sha1s], dtype=np.int64)


def extract_shard(cfg: DictConfig, samples: Samples) -> dict[str, float]:
    """Extract this shard's labelled images into the cache; the extraction's stats."""
    from omegaconf import OmegaConf

    settings = shard_settings(cfg)
    assert settings is not None
    shard, n = settings
    node = OmegaConf.select(cfg, "model.backbone")
    table = samples.table
    use = table["split"].isin(LABELLED_SPLITS).to_numpy() & (table["sha1"].astype(str) != "").to_numpy()
    rows = table[use].drop_duplicates("sha1")
    sha1s = rows["sha1"].astype(str).str.lower().tolist()
    mine = shard_of(sha1s, n) == shard
    paths = rows["path"].astype(str).to_numpy()[mine].tolist()
    sha1s = [s for s, m in zip(sha1s, mine, strict=True) if m]
    log.info("features shard %d of %d: %d of %d distinct images", shard, n, len(sha1s), len(mine))
    if not sha1s:
        return {"n_images": 0.0, "n_extracted": 0.0, "shard": float(shard), "num_shards": float(n)}
    # the encoder a job of this config builds (alignment included), so the jobs find these features
    enc_cfg = with_alignment(
        expand_members(OmegaConf.to_container(node, resolve=True)),
        OmegaConf.select(cfg, "data.align", default=None),
    )
    encoder = build_encoder(enc_cfg)
    extract = extract_concat if isinstance(encoder, ConcatEncoder) else extract_features
    _, stats = extract(
        encoder,
        paths,
        sha1s,
        Path(cfg.features.cache_dir).expanduser(),
        batch_size=int(cfg.features.batch_size),
        num_workers=int(cfg.features.num_workers),
        device=str(cfg.features.device),
    )
    out: dict[str, Any] = {k: float(v) for k, v in stats.items()}
    out.update(shard=float(shard), num_shards=float(n))
    return out
