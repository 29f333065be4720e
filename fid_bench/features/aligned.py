"""An encoder that sees every image through the run's format alignment (``data.align``).

``AlignedEncoder`` wraps any encoder of the ``Encoder`` contract: ``transform`` re-encodes the
decoded image with ``data.decode.Alignment`` before the wrapped encoder's own preprocessing, and
``identity`` (the feature-cache key) adds the alignment's key, so aligned and unaligned features
never mix. The features track builds its encoder from ``with_alignment(model.backbone, data.align)``,
and its predictor keeps that config, so ``predict``, extra data sets and perturbations are aligned
the same way as training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fid_bench.data.decode import Alignment, parse_alignment
from fid_bench.features.encoders import AlteringEncoder, as_encoder

if TYPE_CHECKING:
    from PIL import Image

ALIGNED_TARGET = "fid_bench.features.aligned.AlignedEncoder"


class AlignedEncoder(AlteringEncoder):
    """``encoder`` applied to images re-encoded by ``align`` (see the module docstring)."""

    def __init__(self, encoder: Any, align: Alignment | dict) -> None:
        super().__init__()
        alignment = parse_alignment(align)
        if alignment is None:
            raise ValueError("AlignedEncoder needs an alignment")
        self.inner = as_encoder(encoder)  # a backbone config arrives built by Hydra: frozen here
        self.align = alignment

    @property
    def name(self) -> str:
        return f"{self.inner.name}@{self.align.format}{self.align.quality or ''}"

    @property
    def key(self) -> str:
        return self.align.key

    def alter(self, img: Image.Image) -> Image.Image:
        return self.align.apply(img)

    def described(self) -> dict[str, Any]:
        return {"align": self.align.as_dict()}

    def model_files(self) -> dict[str, str]:
        return self.inner.model_files() if hasattr(self.inner, "model_files") else {}

    @classmethod
    def aligned_config(cls, encoder_cfg: dict[str, Any], alignment: Alignment) -> dict[str, Any]:
        """Aligned already: the config as it is (see ``with_alignment``)."""
        return encoder_cfg


def with_alignment(encoder_cfg: dict[str, Any], align: Any) -> dict[str, Any]:
    """The encoder config (a plain ``_target_`` mapping) with ``align`` applied to every encoder in it.

    No alignment: the config unchanged. An encoder class may declare how it is aligned
    (``aligned_config``: a concatenation aligns each member, so every member keeps its own aligned
    feature cache; an aligned encoder is aligned already); any other encoder or backbone is wrapped.
    """
    alignment = parse_alignment(align)
    if alignment is None:
        return encoder_cfg
    declared = getattr(_target_class(encoder_cfg), "aligned_config", None)
    if declared is not None:
        return declared(encoder_cfg, alignment)
    return {"_target_": ALIGNED_TARGET, "encoder": encoder_cfg, "align": alignment.as_dict()}


def _target_class(encoder_cfg: dict[str, Any]) -> Any:
    """The class a config's ``_target_`` names (its module imported: no network built), or None
    when it cannot be found (building the encoder then says why)."""
    from hydra.utils import get_object

    target = encoder_cfg.get("_target_")
    if not target:
        return None
    try:
        return get_object(str(target))
    except ImportError:
        return None
