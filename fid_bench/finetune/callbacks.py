"""Lightning callbacks of the fine-tuning track."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch

#: per-epoch metrics taken from what the LightningModule logged
EPOCH_METRICS = ("train_loss", "train_roc_auc", "val_loss", "val_roc_auc")


class EpochMetrics(pl.Callback):
    """Per-epoch train/val loss and ROC-AUC, lr and training throughput -> the job's run logger.

    The run logger is the job's MLflow run (``Job.logger``), so epochs appear as metric steps of the
    job's own run rather than as separate runs. Only global rank 0 logs, so a DDP job writes each
    epoch once; ``history`` keeps the same rows on every rank.
    """

    def __init__(self, logger: Any, prefix: str = "") -> None:
        self.logger = logger
        self.prefix = prefix
        self.history: list[dict[str, float]] = []
        self._t0 = 0.0
        self._t_last = 0.0
        self._n = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = self._t_last = time.perf_counter()
        self._n = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._t_last = time.perf_counter()
        self._n += int(batch["label"].shape[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {
            k: float(trainer.callback_metrics[k]) for k in EPOCH_METRICS if k in trainer.callback_metrics
        }
        # validation runs before this hook: the train time is first to last training batch
        seconds = max(self._t_last - self._t0, 1e-9)
        # every rank processes the same number of batches, so the job's rate is world_size times ours
        metrics["train_images_per_s"] = self._n * trainer.world_size / seconds
        metrics["epoch_train_s"] = seconds
        if trainer.optimizers:
            metrics["lr"] = float(trainer.optimizers[0].param_groups[-1]["lr"])
        self.history.append(metrics)
        if trainer.is_global_zero:
            self.logger.log_metrics(
                {self.prefix + k: v for k, v in metrics.items()}, step=trainer.current_epoch
            )


class TorchThreads(pl.Callback):
    """Set torch's intra-op threads to the job's ``trainer.threads`` when fitting starts.

    The detector sets them before training too; this runs again inside ``fit`` because Lightning's
    DDP launchers set their own count (CPUs / processes) after the trainer is built, in every process.
    """

    def __init__(self, threads: int) -> None:
        self.threads = int(threads)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)
