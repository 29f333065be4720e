"""The LightningModule: a backbone with a binary head, trained on logits of "generated".

``BinaryNet`` is the plain ``nn.Module`` (normalisation + backbone + linear head) that both training
and the predictor run, so test-time and prediction-time outputs come from the same code.
``FinetuneModule`` adds the training recipe: weighted BCE, AdamW-style optimiser with parameter
groups, a warm-up + cosine schedule, backbone freezing / delayed unfreezing, and ROC-AUC on train
and validation (synchronised across DDP ranks by torchmetrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from fid_bench.backbones.base import Built
from fid_bench.errors import FidBenchError


class BinaryNet(nn.Module):
    """uint8 ``[B, 3, S, S]`` pixels -> one logit of "generated" per image.

    ``built`` is what a ``fid_bench.backbones`` backbone's ``build()`` returns: the network and the
    preprocessing whose ``mean``/``std`` normalise the pixels here. With ``tta_hflip`` an image's
    logit in eval mode is the mean of its own and its mirror image's (training is unchanged), so
    validation, test and ``predict`` all score the same way.
    """

    def __init__(self, built: Built, head_dropout: float = 0.0, tta_hflip: bool = False) -> None:
        super().__init__()
        pre = built.preprocessing
        self.backbone = built.network
        self.head = nn.Sequential(nn.Dropout(float(head_dropout)), nn.Linear(built.num_features, 1))
        # kept as buffers so a state_dict carries the exact normalisation it was trained with
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.channels_last = False
        self.tta_hflip = bool(tta_hflip)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.to(self.mean.dtype) - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.head(self.backbone(x)).squeeze(1)
        if self.tta_hflip and not self.training:
            logits = 0.5 * (logits + self.head(self.backbone(x.flip(3))).squeeze(1))
        return logits


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 1.0,
    min_lr_ratio: float = 0.0,
    group_gates: list[Callable[[int], float]] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` of the base lr.

    ``group_gates`` multiplies each parameter group's factor by ``gate(step)`` (0 keeps a frozen
    backbone still until it is unfrozen).
    """
    warmup = max(0, round(warmup_epochs * steps_per_epoch))
    total = max(total_steps, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    gates = group_gates or [lambda step: 1.0] * len(optimizer.param_groups)
    lambdas = [lambda step, g=g: factor(step) * g(step) for g in gates]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def constant_lr(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    group_gates: list[Callable[[int], float]] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The base lr throughout (still honouring freeze gates)."""
    gates = group_gates or [lambda step: 1.0] * len(optimizer.param_groups)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, list(gates))


class FinetuneModule(pl.LightningModule):
    """Training recipe around a ``BinaryNet``.

    ``optimizer`` is a partial (``optimizer(param_groups)``, e.g. ``torch.optim.AdamW``) and
    ``scheduler`` a partial of ``cosine_with_warmup`` / ``constant_lr`` or None, both built from the
    config by Hydra. Weight decay applies to weights only, not to biases and normalisation layers.

    Freezing: with ``freeze_backbone`` and no ``unfreeze_after`` the backbone never trains (linear
    probe) and gets no gradients at all. With ``unfreeze_after=N`` it is held still for the first N
    epochs by a zero learning-rate gate and eval-mode normalisation layers, rather than by toggling
    ``requires_grad`` mid-run, which DDP (whose gradient hooks are fixed when it wraps the model)
    would not follow.
    """

    def __init__(
        self,
        net: BinaryNet,
        *,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        freeze_backbone: bool = False,
        unfreeze_after: int | None = None,
        class_weights: dict[int, float] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        from torchmetrics.classification import BinaryAUROC

        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.freeze_backbone = bool(freeze_backbone)
        self.unfreeze_after = None if unfreeze_after is None else int(unfreeze_after)
        if self.unfreeze_after is not None and self.unfreeze_after < 0:
            raise FidBenchError(f"classifier.unfreeze_after must be >= 0 or null, got {unfreeze_after}")
        weights = class_weights or {}
        self.register_buffer(
            "class_weight", torch.tensor([weights.get(0, 1.0), weights.get(1, 1.0)], dtype=torch.float32)
        )
        self.train_auroc = BinaryAUROC()
        self.val_auroc = BinaryAUROC()
        self.samples_seen = 0  # training images this rank processed (checked by the DDP test)
        self.n_unreadable_train = 0
        if self.freeze_backbone and self.unfreeze_after is None:
            for p in self.net.backbone.parameters():
                p.requires_grad_(False)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self.net
        if compile:
            # compile the plain module; the state_dict keeps its own (uncompiled) keys
            self._forward = torch.compile(self.net)

    # -- freezing ------------------------------------------------------------------------------
    def backbone_frozen(self, epoch: int | None = None) -> bool:
        epoch = self.current_epoch if epoch is None else epoch
        if not self.freeze_backbone:
            return False
        return self.unfreeze_after is None or epoch < self.unfreeze_after

    def on_train_epoch_start(self) -> None:
        if self.backbone_frozen():
            # frozen normalisation statistics too: a linear probe must not move the backbone at all
            self.net.backbone.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._forward(pixels)

    # -- steps ---------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, label: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        per_row = nn.functional.binary_cross_entropy_with_logits(logits.float(), label, reduction="none")
        weight = self.class_weight[label.long()] * ok.float()
        return (per_row * weight).sum() / ok.float().sum().clamp(min=1.0)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["pixels"])
        ok = batch["ok"]
        loss = self._loss(logits, batch["label"], ok)
        n = batch["label"].shape[0]
        self.samples_seen += n
        self.n_unreadable_train += int((~ok).sum())
        if ok.any():
            self.train_auroc.update(torch.sigmoid(logits.detach()[ok].float()), batch["label"][ok].long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train_roc_auc", self.train_auroc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["pixels"])
        ok = batch["ok"]
        # unweighted: validation describes the data as it is
        per_row = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), batch["label"], reduction="none"
        )
        loss = (per_row * ok.float()).sum() / ok.float().sum().clamp(min=1.0)
        if ok.any():
            self.val_auroc.update(torch.sigmoid(logits[ok].float()), batch["label"][ok].long())
        n = batch["label"].shape[0]
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("val_roc_auc", self.val_auroc, on_step=False, on_epoch=True)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        groups: list[dict[str, Any]] = []
        gates: list[Callable[[int], float]] = []
        for part, module in (("backbone", self.net.backbone), ("head", self.net.head)):
            decay, no_decay = [], []
            for p in module.parameters():
                if p.requires_grad:
                    (no_decay if p.ndim <= 1 else decay).append(p)
            for params, wd in ((decay, None), (no_decay, 0.0)):
                if not params:
                    continue
                group: dict[str, Any] = {"params": params, "name": part}
                if wd is not None:
                    group["weight_decay"] = wd
                groups.append(group)
                gates.append(self._gate(part))
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            if self.freeze_backbone and self.unfreeze_after is not None:
                scheduler = constant_lr(optimizer, total_steps=1, steps_per_epoch=1, group_gates=gates)
                return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs or 1)))
        scheduler = self.scheduler_factory(
            optimizer, total_steps=total, steps_per_epoch=steps_per_epoch, group_gates=gates
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _gate(self, part: str) -> Callable[[int], float]:
        if part != "backbone" or not self.freeze_backbone or self.unfreeze_after is None:
            return lambda step: 1.0
        # the scheduler counts optimiser steps; the epoch decides, so read it from the trainer
        return lambda step: 0.0 if self.backbone_frozen() else 1.0
