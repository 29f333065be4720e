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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.data.samples import LABELLED_SPLITS
from fid_bench.errors import FidBenchError
from fid_bench.features.encoders import build_encoder

if TYPE_CHECKING:
    from fid_bench.data.samples import Samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, the encoder config a job of the same config builds (``_target_``
    mapping, alignment included) and the extraction settings (``features.*``)."""

    index: int
    count: int
    encoder: dict[str, Any]
    cache_dir: Path
    batch_size: int
    num_workers: int
    device: str

    @classmethod
    def of_config(cls, cfg: Any) -> Shard | None:
        """``features.shard`` of ``features.num_shards`` with the encoder a job of this config builds
        (alignment included, so the jobs find these features), or None for an ordinary job."""
        from omegaconf import OmegaConf

        from fid_bench.features.aligned import with_alignment
        from fid_bench.features.concat import expand_members

        if not shard_requested(cfg):
            return None
        node = OmegaConf.select(cfg, "model.backbone")
        members = expand_members(OmegaConf.to_container(node, resolve=True))
        return cls(
            index=int(cfg.features.shard),
            count=int(cfg.features.num_shards),
            encoder=with_alignment(members, OmegaConf.select(cfg, "data.align", default=None)),
            cache_dir=Path(cfg.features.cache_dir).expanduser(),
            batch_size=int(cfg.features.batch_size),
            num_workers=int(cfg.features.num_workers),
            device=str(cfg.features.device),
        )


def shard_requested(cfg: Any) -> bool:
    """Whether the config asks for one shard of a split extraction (``features.shard`` of
    ``features.num_shards``); bad values are one-line errors (``check_shard``)."""
    from omegaconf import OmegaConf

    return check_shard(
        OmegaConf.select(cfg, "features.shard", default=None),
        OmegaConf.select(cfg, "features.num_shards", default=1),
        has_encoder=OmegaConf.select(cfg, "model.backbone") is not None,
        model=OmegaConf.select(cfg, "model.name"),
    )


def check_shard(shard: Any, num_shards: Any, *, has_encoder: bool, model: Any = None) -> bool:
    """Whether ``features.shard`` / ``features.num_shards`` split the extraction; bad values, or a
    model without a frozen encoder to extract with, are one-line errors."""
    n, i = num_shards, shard
    if n in (None, 1) and i in (None, 0):
        return False
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise FidBenchError(f"features.num_shards must be a positive integer, got {n!r}")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
        raise FidBenchError(
            f"features.shard must be an integer in [0, {n - 1}] with num_shards={n}, got {i!r}"
        )
    if not has_encoder:
        raise FidBenchError(f"features.num_shards: model={model} has no frozen encoder to extract with")
    return True


def shard_of(sha1s: list[str], num_shards: int) -> np.ndarray:
    """The shard of each content hash."""
    return np.array([int(s[:15], 16) % num_shards for s in sha1s], dtype=np.int64)


def extract_shard(shard: Shard, samples: Samples) -> dict[str, float]:
    """Extract this shard's labelled images into the cache; the extraction's stats."""
    table = samples.table
    use = table["split"].isin(LABELLED_SPLITS).to_numpy() & (table["sha1"].astype(str) != "").to_numpy()
    rows = table[use].drop_duplicates("sha1")
    sha1s = rows["sha1"].astype(str).str.lower().tolist()
    mine = shard_of(sha1s, shard.count) == shard.index
    paths = rows["path"].astype(str).to_numpy()[mine].tolist()
    sha1s = [s for s, m in zip(sha1s, mine, strict=True) if m]
    log.info(
        "features shard %d of %d: %d of %d distinct images", shard.index, shard.count, len(sha1s), len(mine)
    )
    done = {"shard": float(shard.index), "num_shards": float(shard.count)}
    if not sha1s:
        return {"n_images": 0.0, "n_extracted": 0.0, **done}
    _, stats = build_encoder(shard.encoder).extract(
        paths,
        sha1s,
        shard.cache_dir,
        batch_size=shard.batch_size,
        num_workers=shard.num_workers,
        device=shard.device,
    )
    out: dict[str, Any] = {k: float(v) for k, v in stats.items()}
    out.update(done)
    return out
