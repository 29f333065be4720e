"""``model=concat``: several frozen encoders' features side by side (feature fusion).

``ConcatEncoder(members)`` holds encoders of the ``Encoder`` contract (``identity``,
``transform``, ``encode``; e.g. CLIP and the spectrum features). The features track extracts each
member through its *own* feature cache (``ConcatEncoder.extract``) and joins the columns, so fusing
features already cached for single-encoder runs costs no extraction, and a member's cache is
shared with every run that uses it. The classifier's ``StandardScaler`` (``scale: true`` in the
configs that need it) puts members of different scales on an equal footing.

The concatenation also works on its own as an encoder (``transform`` gives one item per member,
``encode`` encodes each member's part of the batch), with an identity made of the members'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fid_bench.errors import FidBenchError
from fid_bench.features.encoders import Encoder, as_encoder

if TYPE_CHECKING:
    from PIL import Image

CONCAT_TARGET = "fid_bench.features.concat.ConcatEncoder"


class ConcatEncoder(Encoder):
    """The members' feature vectors, concatenated in the order given."""

    def __init__(self, members: Sequence[Any], image_size: int | None = None) -> None:
        super().__init__()
        members = list(members or [])
        if any(isinstance(m, str) for m in members):
            # model options by name (the config's form): build their encoders
            from hydra.utils import instantiate

            expanded = expand_members(
                {"_target_": CONCAT_TARGET, "members": members, "image_size": image_size}
            )
            members = [m if not isinstance(m, dict) else instantiate(m) for m in expanded["members"]]
        members = [as_encoder(m) for m in members]  # backbones (timm, CLIP) frozen
        if len(members) < 2:
            raise FidBenchError(f"model=concat needs at least two member encoders, got {len(members)}")
        for m in members:
            if not all(hasattr(m, attr) for attr in ("identity", "transform", "encode")):
                raise FidBenchError(
                    f"model=concat: member {type(m).__name__} is not an encoder (needs identity, transform, encode)"
                )
        self.members = members

    @property
    def name(self) -> str:
        return "concat(" + "+".join(str(getattr(m, "name", type(m).__name__)) for m in self.members) + ")"

    @property
    def identity(self) -> str:
        return "ConcatEncoder:" + json.dumps([str(m.identity) for m in self.members], separators=(",", ":"))

    def _identity_fields(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "identity": self.identity,
            "members": [
                m.describe() if hasattr(m, "describe") else {"identity": m.identity} for m in self.members
            ],
        }

    def model_files(self) -> dict[str, str]:
        return {k: v for m in self.members if hasattr(m, "model_files") for k, v in m.model_files().items()}

    def prepare(self, device: str) -> None:
        self.device = device
        for m in self.members:
            if hasattr(m, "prepare"):
                m.prepare(device)

    def load(self) -> None:
        for m in self.members:
            if hasattr(m, "load"):
                m.load()

    def transform(self, img: Image.Image) -> tuple[Any, ...]:
        return tuple(m.transform(img) for m in self.members)

    def encode(self, batch: Any) -> np.ndarray:
        parts = []
        for j, member in enumerate(self.members):
            items = [item[j] for item in batch]
            parts.append(np.asarray(member.encode(_collate(items)), dtype=np.float32))
        return np.concatenate(parts, axis=1)

    @classmethod
    def aligned_config(cls, encoder_cfg: dict[str, Any], alignment: Any) -> dict[str, Any]:
        """Each member aligned on its own, so it keeps its own (aligned) feature cache (see
        ``aligned.with_alignment``)."""
        from fid_bench.features.aligned import with_alignment

        return {
            **encoder_cfg,
            "members": [with_alignment(dict(m), alignment) for m in encoder_cfg["members"]],
        }

    def extract(
        self, paths: Sequence[str], sha1s: Sequence[str], cache_dir: Path, **kwargs: Any
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Each member's features through its own cache, joined column-wise; stats summed over members
        (``cache_hit_ratio`` is the share of member-image pairs already cached)."""
        blocks, totals = [], {}
        for member in self.members:
            feats, stats = member.extract(paths, sha1s, cache_dir, **kwargs)
            blocks.append(np.asarray(feats, dtype=np.float32))
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        n = len(self.members)
        totals["cache_hit_ratio"] = totals.get("cache_hit_ratio", 0.0) / n
        for key in ("n_images", "n_unique"):
            if key in totals:
                totals[key] /= n  # the same images for every member
        for key in ("images_per_s", "extract_images_per_s", "extract/images_per_s"):
            totals.pop(key, None)  # rates do not add up across members
        if totals.get("extract/seconds", 0.0) > 0:
            # images through every member per second of the members' extractions together
            totals["extract/images_per_s"] = totals.get("n_extracted", 0.0) / n / totals["extract/seconds"]
        return np.concatenate(blocks, axis=1), totals


def _collate(items: list[Any]) -> Any:
    """One member's items of a batch in the form its ``encode`` takes (as extraction collates them)."""
    first = items[0]
    if isinstance(first, np.ndarray):
        return np.stack(items) if all(i.shape == first.shape for i in items) else items
    import torch

    return torch.stack([torch.as_tensor(i) for i in items])


def expand_members(encoder_cfg: dict[str, Any], image_size: int | None = None) -> dict[str, Any]:
    """A concat encoder config whose ``members`` name model options (``[spectrum, clip_vit_b32]``)
    with each replaced by that option's ``model.backbone``, resolved in its own small config (its
    ``${model.*}`` interpolations refer to itself; ``data.image_size`` is the run's). Members given
    as encoder configs (with ``_target_``) stay as they are; any other config is returned unchanged.
    """
    from omegaconf import OmegaConf

    from fid_bench.config import load_option

    if encoder_cfg.get("_target_") != CONCAT_TARGET:
        return encoder_cfg
    if image_size is None:
        image_size = encoder_cfg.get("image_size")
    members = []
    for member in encoder_cfg.get("members") or []:
        if isinstance(member, dict):
            members.append(member)
            continue
        name = str(member)
        if name == "concat":
            raise FidBenchError("model=concat: a member cannot be concat itself")
        option = load_option("model", name, what="model.members")
        node = OmegaConf.create({"model": option.get("model"), "data": {"image_size": image_size}})
        enc = OmegaConf.select(node, "model.backbone")
        if enc is None:
            raise FidBenchError(f"model.members: model={name} has no frozen encoder to concatenate")
        members.append(OmegaConf.to_container(enc, resolve=True))
    return {**encoder_cfg, "members": members}
