"""``classifier=finetune``: train ``model.backbone`` end to end with Lightning, score val and test rows.

The job flow is the features track's (``experiment.run_job``): ``setup`` once, ``fit_predict`` per
fold returning scores for ``fold.val`` and ``fold.test``, final metrics by the shared metrics module.
Per-epoch metrics go to the job's run logger (``EpochMetrics``); the weights of the best validation
ROC-AUC epoch (Lightning's ``ModelCheckpoint``) score the held-out rows and become the predictor.

Config keys come from ``conf/classifier/finetune.yaml`` (the training recipe; a model config such as
``small_cnn`` may override them), which also hands over the parts of the config the detector reads:
``backbone`` (``model.backbone``), ``trainer`` (``conf/trainer/*.yaml``: Lightning ``Trainer``
arguments plus the loader/speed options in ``HARNESS_KEYS``) and ``folds`` (``cv.folds``).

This module imports neither torch nor Lightning at import time: Hydra imports it to build the
detector, and a config error should not wait for them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fid_bench.backbones.base import Backbone
from fid_bench.config import to_plain
from fid_bench.contract import FINETUNE_TRACK, Detector, Job, Predictor, scores_frame
from fid_bench.data.decode import parse_alignment
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import validation_threshold
from fid_bench.finetune.augment import Augment
from fid_bench.finetune.decoded import MODES, prepare_file
from fid_bench.finetune.threads import available_cpus, check_threads, resolve_threads, torch_threads

if TYPE_CHECKING:
    from fid_bench.data.splits import Fold

log = logging.getLogger(__name__)

#: trainer config keys read by the harness; every other key is a Lightning ``Trainer`` argument
HARNESS_KEYS = (
    "num_workers",
    "pin_memory",
    "channels_last",
    "compile",
    "progress_bar",
    "matmul_precision",
    "threads",
)


def _is_tty() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class FinetuneDetector(Detector):
    """Fine-tune ``model.backbone`` (see ``conf/classifier/finetune.yaml`` for every option)."""

    # per-fold checkpoints and epoch metrics are laid out for cv.folds only; a network per source
    # on top would also cost hours on a CPU
    supports_source_folds = False
    track = FINETUNE_TRACK

    def __init__(
        self,
        name: str = "finetune",
        backbone: Any = None,
        trainer: Any = None,
        folds: int | None = None,
        align: Any = None,
        max_epochs: int = 10,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        optimizer: Any = None,
        scheduler: Any = None,
        freeze_backbone: bool = False,
        unfreeze_after: int | None = None,
        head_dropout: float = 0.0,
        tta_hflip: bool = False,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        early_stopping_patience: int | None = None,
        early_stopping_min_delta: float = 0.0,
        monitor: str = "val_roc_auc",
        seed: int = 0,
        augment: Any = None,
        decoded_cache: str = "auto",
        decoded_cache_max_gb: float = 2.0,
    ) -> None:

        self.name = name
        self.backbone_cfg: dict[str, Any] | None = to_plain(backbone)
        self.trainer_cfg: dict[str, Any] = dict(to_plain(trainer) or {})
        check_threads(self.trainer_cfg.get("threads"))  # a bad value stops the job before any work
        self.folds = int(folds or 1)
        self.align = to_plain(align)  # data.align: every image re-encoded the same way first
        self.max_epochs = int(max_epochs)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.optimizer_cfg = to_plain(optimizer) or {
            "_target_": "torch.optim.AdamW",
            "_partial_": True,
            "lr": 1e-3,
        }
        self.scheduler_cfg = to_plain(scheduler)
        self.freeze_backbone = bool(freeze_backbone)
        self.unfreeze_after = unfreeze_after
        self.head_dropout = float(head_dropout)
        self.tta_hflip = bool(tta_hflip)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.gradient_clip_val = gradient_clip_val
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_min_delta = float(early_stopping_min_delta)
        self.monitor = monitor
        self.seed = int(seed)
        self.augment = Augment.from_config(to_plain(augment))
        self.decoded_cache = str(decoded_cache)
        self.decoded_cache_max_gb = float(decoded_cache_max_gb)
        if self.decoded_cache not in MODES:
            raise FidBenchError(
                f"classifier.decoded_cache must be one of {list(MODES)}, got {decoded_cache!r}"
            )
        if self.max_epochs < 1:
            raise FidBenchError(f"classifier.max_epochs must be >= 1, got {max_epochs}")
        if self.accumulate_grad_batches < 1:
            raise FidBenchError(
                f"classifier.accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}"
            )
        if monitor not in ("val_roc_auc", "val_loss"):
            raise FidBenchError(f"classifier.monitor must be val_roc_auc or val_loss, got {monitor!r}")
        self._predictor: FinetunePredictor | None = None
        self._fold_stats: list[dict[str, float]] = []
        self.last_fit: dict[str, Any] = {}

    # -- Detector interface --------------------------------------------------------------------
    def setup(self, job: Job) -> None:
        self._backbone()  # a model with nothing to train fails here, before any work
        self._fold_stats = []

    def _backbone(self) -> Backbone:
        """A fresh backbone from the config; a one-line error when it has nothing to train."""
        from hydra.utils import instantiate

        built = instantiate(self.backbone_cfg) if self.backbone_cfg is not None else None
        if not isinstance(built, Backbone):
            model = getattr(built, "name", None) or "?"
            raise FidBenchError(
                f"model={model} has no trainable network, so it cannot be used with classifier=finetune; "
                "use an embedding classifier instead (e.g. classifier=logreg)"
            )
        if getattr(built, "native", None):
            raise FidBenchError(
                "model.resize=native is a frozen-features option (crops averaged into one cached row); "
                "classifier=finetune trains on resized squares: drop model.resize or use a feature "
                "classifier (e.g. classifier=logreg)"
            )
        return built

    def fit_predict(self, job: Job, fold: Fold) -> pd.DataFrame:
        import pytorch_lightning as pl
        import torch
        from pytorch_lightning.accelerators import CPUAccelerator

        from fid_bench.finetune.callbacks import TorchThreads

        backbone = self._backbone()
        hw = self._hardware()
        pl.seed_everything(self.seed, workers=True, verbose=False)
        if hw["matmul_precision"]:
            torch.set_float32_matmul_precision(hw["matmul_precision"])

        prefix = f"fold{fold.index}/" if self.folds > 1 else ""
        ckpt_dir = Path(job.output_dir) / "checkpoints" / f"fold{fold.index}"
        val_labels = job.samples.table["label"].to_numpy()[fold.val]
        can_monitor = len(np.unique(val_labels)) == 2 or self.monitor == "val_loss"
        if not can_monitor:
            log.warning("fold %d: validation rows hold one class; keeping the last epoch", fold.index)
        trainer = self._trainer(job, hw, ckpt_dir, prefix, can_monitor)
        # the trainer knows where the network runs and how many processes share this node's CPUs
        on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
        threads = resolve_threads(
            hw["threads"], workers=hw["num_workers"], processes=int(trainer.num_devices), on_cpu=on_cpu
        )
        trainer.callbacks.append(TorchThreads(threads))
        if not self._fold_stats:  # once per job, not per fold
            how = (
                f"trainer.threads={hw['threads']}"
                if hw["threads"] is not None
                else f"auto: {available_cpus()} CPUs, {hw['num_workers']} loader workers, "
                f"torch's default {torch.get_num_threads()}"
                + (f", {trainer.num_devices} processes" if trainer.num_devices > 1 else "")
                + ("" if on_cpu else ", network on the GPU")
            )
            log.info("torch threads: %d (%s)", threads, how)
        # restored afterwards: the next job of a sweep in this process starts from torch's own setting
        with torch_threads(threads):
            return self._fit_and_score(job, fold, backbone, hw, trainer, can_monitor, threads)

    def _fit_and_score(
        self,
        job: Job,
        fold: Fold,
        backbone: Backbone,
        hw: dict[str, Any],
        trainer: Any,
        can_monitor: bool,
        threads: int,
    ) -> pd.DataFrame:
        """Train with ``trainer`` and score the fold's val and test rows (under the job's threads)."""
        import torch
        from hydra.utils import instantiate

        # these modules import torch / Lightning at their top: only a fine-tuning job pays for them
        from fid_bench.finetune.callbacks import EpochMetrics
        from fid_bench.finetune.datamodule import FinetuneDataModule
        from fid_bench.finetune.module import BinaryNet, FinetuneModule

        table = job.samples.table
        built = backbone.build()
        net = BinaryNet(built, head_dropout=self.head_dropout, tta_hflip=self.tta_hflip)
        preprocessing = built.preprocessing.finetune_dict()
        # data.align: training, evaluation and the predictor decode through the same alignment
        alignment = parse_alignment(self.align)
        preprocessing["align"] = alignment.as_dict() if alignment is not None else None
        if hw["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
            net.channels_last = True

        dm = FinetuneDataModule(
            table,
            fold,
            image_size=preprocessing["image_size"],
            balance=job.balance,
            augment=self.augment,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            num_workers=hw["num_workers"],
            pin_memory=hw["pin_memory"],
            decoded_cache=self.decoded_cache,
            decoded_cache_max_gb=self.decoded_cache_max_gb,
            cache_dir=job.cache_dir,
            seed=self.seed,
            align=preprocessing["align"],
        )
        y_train = table["label"].to_numpy()[fold.train]
        prior = float(np.mean(y_train)) if len(y_train) else 0.5
        module = FinetuneModule(
            net,
            optimizer=instantiate(self.optimizer_cfg),
            scheduler=instantiate(self.scheduler_cfg) if self.scheduler_cfg else None,
            freeze_backbone=self.freeze_backbone,
            unfreeze_after=self.unfreeze_after,
            class_weights=dm.class_weights,
            compile=hw["compile"],
        )

        val_labels = table["label"].to_numpy()[fold.val]
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_s = time.perf_counter() - t0

        best_path = trainer.checkpoint_callback.best_model_path if can_monitor else ""
        trainer.strategy.barrier()
        if best_path:
            state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        device = self._eval_device(trainer)
        net = module.net.to(device).eval()
        scores = {}
        n_unreadable = 0
        for split, rows in (("val", fold.val), ("test", fold.test)):
            s, ok = score_batches(net, dm.eval_dataloader(rows), device)
            s[~ok] = prior
            n_unreadable += int((~ok).sum())
            scores[split] = s

        threshold = validation_threshold(pd.DataFrame({"label": val_labels, "score": scores["val"]}))
        self._predictor = FinetunePredictor(
            backbone=self.backbone_cfg,
            state_dict={k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()},
            preprocessing=preprocessing,
            head_dropout=self.head_dropout,
            tta_hflip=self.tta_hflip,
            threshold=threshold,
            prior=prior,
            batch_size=self.eval_batch_size,
        )
        epoch_cb = next(cb for cb in trainer.callbacks if isinstance(cb, EpochMetrics))
        self.last_fit = {
            "world_size": int(trainer.world_size),
            "global_rank": int(trainer.global_rank),
            "samples_seen": int(module.samples_seen),
            "epochs": int(trainer.current_epoch),
            "history": epoch_cb.history,
            "best_path": best_path,
        }
        stats = {
            "fit_s": fit_s,
            "epochs_trained": float(len(epoch_cb.history)),
            "train_images_per_s": float(np.mean([h["train_images_per_s"] for h in epoch_cb.history]))
            if epoch_cb.history
            else math.nan,
            "n_params": float(sum(p.numel() for p in module.net.parameters())),
            "n_unreadable": float(n_unreadable + module.n_unreadable_train),
            "decode_s": float(dm.decoded.seconds) if dm.decoded is not None else 0.0,
            "world_size": float(trainer.world_size),
            "torch_threads": float(threads),  # trainer.threads as resolved (auto: per machine)
        }
        if best_path and trainer.checkpoint_callback.best_model_score is not None:
            stats["best_" + self.monitor] = float(trainer.checkpoint_callback.best_model_score)
        self._fold_stats.append(stats)
        return pd.concat(
            [
                scores_frame(table, fold.val, scores["val"], "val", fold.index),
                scores_frame(table, fold.test, scores["test"], "test", fold.index),
            ],
            ignore_index=True,
        )

    def predictor(self) -> FinetunePredictor:
        if self._predictor is None:
            raise FidBenchError("finetune: predictor() called before fit_predict()")
        return self._predictor

    def extra_metrics(self) -> dict[str, float]:
        if not self._fold_stats:
            return {}
        keys = set().union(*self._fold_stats)
        return {k: float(np.nanmean([s.get(k, math.nan) for s in self._fold_stats])) for k in sorted(keys)}

    # -- helpers -------------------------------------------------------------------------------
    def _hardware(self) -> dict[str, Any]:
        trainer_cfg = dict(self.trainer_cfg)
        trainer_cfg.pop("_target_", None)
        hw = {
            "num_workers": int(trainer_cfg.pop("num_workers", 0)),
            "pin_memory": bool(trainer_cfg.pop("pin_memory", False)),
            "channels_last": bool(trainer_cfg.pop("channels_last", False)),
            "compile": bool(trainer_cfg.pop("compile", False)),
            "progress_bar": trainer_cfg.pop("progress_bar", "auto"),
            "matmul_precision": trainer_cfg.pop("matmul_precision", None),
            "threads": check_threads(trainer_cfg.pop("threads", None)),
        }
        if hw["num_workers"] < 0:
            raise FidBenchError(f"trainer.num_workers must be >= 0, got {hw['num_workers']}")
        if trainer_cfg.get("max_epochs") is None:
            trainer_cfg["max_epochs"] = self.max_epochs
        hw["trainer_kwargs"] = trainer_cfg
        return hw

    def _trainer(self, job: Job, hw: dict[str, Any], ckpt_dir: Path, prefix: str, can_monitor: bool):
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

        from fid_bench.finetune.callbacks import EpochMetrics

        mode = "max" if self.monitor == "val_roc_auc" else "min"
        callbacks: list[Any] = [EpochMetrics(job.logger, prefix)]
        if can_monitor:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    filename="best",
                    monitor=self.monitor,
                    mode=mode,
                    save_top_k=1,
                    save_weights_only=True,
                    enable_version_counter=False,
                )
            )
            if self.early_stopping_patience is not None:
                callbacks.append(
                    EarlyStopping(
                        monitor=self.monitor,
                        mode=mode,
                        patience=int(self.early_stopping_patience),
                        min_delta=self.early_stopping_min_delta,
                    )
                )
        progress = hw["progress_bar"]
        kwargs = dict(hw["trainer_kwargs"])
        kwargs.setdefault("accumulate_grad_batches", self.accumulate_grad_batches)
        kwargs.setdefault("gradient_clip_val", self.gradient_clip_val)
        if kwargs.get("sync_batchnorm") and str(kwargs.get("accelerator")) == "cpu":
            # torch's SyncBatchNorm is GPU-only; on the CPU, DDP broadcasts rank 0's statistics instead
            log.info("sync_batchnorm needs GPUs: off for DDP on the CPU")
            kwargs["sync_batchnorm"] = False
        try:
            return pl.Trainer(
                callbacks=callbacks,
                logger=False,
                enable_checkpointing=can_monitor,
                default_root_dir=str(ckpt_dir.parent),
                enable_progress_bar=_is_tty() if progress == "auto" else bool(progress),
                **kwargs,
            )
        except (TypeError, ValueError) as err:
            # MisconfigurationException is a ValueError: wrong accelerator, devices, strategy, ...
            raise FidBenchError(f"trainer config: {err}") from None

    @staticmethod
    def _eval_device(trainer: Any) -> Any:
        import torch

        root = getattr(trainer.strategy, "root_device", None)
        if root is not None and root.type != "cpu":
            return root
        return torch.device("cpu")


def score_batches(net: Any, loader: Any, device: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probability of "generated" and the readable flag for every item of ``loader``, in order."""
    import torch

    scores, oks = [], []
    with torch.inference_mode():
        for batch in loader:
            logits = net(batch["pixels"].to(device, non_blocking=True))
            scores.append(torch.sigmoid(logits.float()).cpu().numpy())
            oks.append(batch["ok"].numpy())
    if not scores:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool)
    return np.concatenate(scores).astype(np.float64), np.concatenate(oks)


#: network targets stored by models logged before ``fid_bench.backbones`` existed -> today's
#: target, and the attribute their wrapper kept the network under (a prefix of its weights)
_LEGACY_NETWORKS = {
    "fid_bench.finetune.networks.SmallCNN": ("fid_bench.backbones.small_cnn.SmallCNN", ""),
    "fid_bench.finetune.networks.timm_network": ("fid_bench.backbones.timm.TimmBackbone", "model."),
    "fid_bench.finetune.networks.open_clip_network": (
        "fid_bench.backbones.open_clip.OpenClipBackbone",
        "visual.",
    ),
}


class FinetunePredictor(Predictor):
    """A fine-tuned network reduced to what prediction needs (picklable, CPU tensors).

    Holds the resolved ``model.backbone`` config, the ``BinaryNet`` state_dict of the best epoch, the
    preprocessing it was trained with, the validation threshold and the training prior. The network
    is rebuilt without pretrained weights (the state_dict replaces them), so loading never needs a
    download. An image that cannot be read gets ``prior`` as its score.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        state_dict: dict[str, Any],
        preprocessing: dict[str, Any],
        *,
        head_dropout: float = 0.0,
        tta_hflip: bool = False,
        threshold: float = 0.5,
        prior: float = 0.5,
        batch_size: int = 64,
    ) -> None:
        self.backbone = dict(backbone)
        self.state_dict = state_dict
        self.preprocessing = dict(preprocessing)
        self.head_dropout = head_dropout
        self.tta_hflip = bool(tta_hflip)
        self.threshold = float(threshold)
        self.prior = float(prior)
        self.batch_size = int(batch_size)
        self._net: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None  # rebuilt on demand
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # models logged before the backbones package hold a ``network`` config and wrapped weights
        if "backbone" not in state and "network" in state:
            state = dict(state)
            cfg = dict(state.pop("network"))
            target, prefix = _LEGACY_NETWORKS.get(cfg.get("_target_"), (cfg.get("_target_"), ""))
            cfg["_target_"] = target
            old = f"backbone.{prefix}"
            state["backbone"] = cfg
            state["state_dict"] = {
                ("backbone." + k[len(old) :] if prefix and k.startswith(old) else k): v
                for k, v in state["state_dict"].items()
            }
        state.setdefault("tta_hflip", False)  # models logged before test-time flipping existed
        self.__dict__.update(state)

    def build_net(self) -> Any:
        """The ``BinaryNet`` in eval mode on the CPU, built once."""
        if self._net is None:
            from hydra.utils import instantiate

            from fid_bench.finetune.module import BinaryNet

            cfg = dict(self.backbone)
            for key, offline in (("pretrained", False), ("weights", None)):
                if key in cfg:
                    cfg[key] = offline
            net = BinaryNet(
                instantiate(cfg).build(), head_dropout=self.head_dropout, tta_hflip=self.tta_hflip
            )
            net.load_state_dict(self.state_dict)
            self._net = net.eval()
        return self._net

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        import torch

        size = int(self.preprocessing["image_size"])
        out = np.full(len(paths), self.prior, dtype=np.float64)
        net = self.build_net()
        for start in range(0, len(paths), self.batch_size):
            align = self.preprocessing.get("align")
            chunk = [prepare_file(str(p), size, align) for p in paths[start : start + self.batch_size]]
            idx = [i for i, arr in enumerate(chunk) if arr is not None]
            if not idx:
                continue
            pixels = torch.from_numpy(np.stack([chunk[i] for i in idx])).permute(0, 3, 1, 2)
            with torch.inference_mode():
                probs = torch.sigmoid(net(pixels).float()).numpy()
            out[start + np.asarray(idx)] = probs
        return out
