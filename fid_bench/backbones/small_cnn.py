"""A compact VGG-style CNN defined in the package and trained from scratch (``model=small_cnn``).

It has no pretrained weights, so its frozen features would be those of a random network: it is
fine-tuned only (``frozen_features = False``). A torch-only family: this module imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fid_bench.backbones.base import Backbone, Built, Preprocessing
from fid_bench.backbones.weights import LOCAL_OR_RANDOM, WeightSource
from fid_bench.errors import FidBenchError

#: the size SmallCNN is built for when the data set does not ask for another one (CIFAKE's 32 px)
SMALL_CNN_SIZE = 32


class SmallCNN(Backbone):
    """Stages of ``blocks`` 3x3 conv-BN-ReLU layers (see ``SmallCNNNet``); ``image_size`` null = 32 px."""

    cache_id = "fid_bench.backbones.small_cnn.SmallCNN"
    frozen_features = False

    def __init__(
        self,
        image_size: int | None = None,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        self.widths = [int(w) for w in widths]
        self.blocks = int(blocks)
        self.dropout = float(dropout)
        if not self.widths or min(self.widths) < 1 or self.blocks < 1:
            raise FidBenchError(
                f"SmallCNN: widths must be positive and blocks >= 1, got {self.widths}, {blocks}"
            )
        self.input_size = int(image_size or SMALL_CNN_SIZE)
        if self.input_size < 2 ** (len(self.widths) - 1):
            raise FidBenchError(
                f"SmallCNN: image_size={self.input_size} is too small for {len(self.widths)} stages "
                f"(needs >= {2 ** (len(self.widths) - 1)})"
            )

    @property
    def name(self) -> str:
        return "small_cnn"

    def weight_source(self) -> WeightSource:
        return LOCAL_OR_RANDOM  # always drawn at random (model.pretrained=false)

    def identity_fields(self, init_seed: int) -> dict[str, Any]:
        return {
            "widths": self.widths,
            "blocks": self.blocks,
            "dropout": self.dropout,
            "image_size": self.input_size,
            "random_init_seed": int(init_seed),
        }

    def build(self) -> Built:
        net = SmallCNNNet(self.widths, self.blocks, self.dropout)
        pre = Preprocessing(
            size=(self.input_size, self.input_size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
        )
        return Built(net, pre, net.num_features)


class SmallCNNNet(nn.Module):
    """A compact VGG-style CNN for small images, trained from scratch.

    Stages of ``blocks`` 3x3 conv-BN-ReLU layers; 2x2 max-pooling between stages only, so the first
    stage sees full-resolution pixels (generator artefacts are high-frequency and an early stride
    would average them away). Global average and max pooling are concatenated: the max keeps a
    strong local artefact that an average over the image would dilute.
    """

    def __init__(self, widths: Sequence[int], blocks: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for stage, width in enumerate(widths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(int(blocks)):
                layers += [
                    nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(float(dropout))
        self.num_features = 2 * in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.dropout(pooled)
