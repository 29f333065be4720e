"""LightningDataModule over the core data layer: the samples table and one ``Fold`` of it.

The rows are the ones the readers kept (same bad-input rules) and the positions are the ones
``make_folds`` chose (same splits as the features track). Images go through ``square_uint8`` (the
deterministic preprocessing) and, for training only, ``Augment``. When ``decoded_cache`` allows it,
every image of the fold is decoded once (``decoded.py``) and epochs read prepared pixels.

Balancing uses the shared ``balance`` strategy: its ``resample(y)`` decides how often each training
row is drawn. Rows drawn more than once (``oversample``) become the weights of a
``WeightedRandomSampler`` that draws ``len(resample(y))`` rows per epoch, so each epoch sees fresh
draws rather than fixed copies; rows it drops (``undersample``) leave the training set.
Under DDP, Lightning shards either sampler across ranks.

A file that cannot be read at training time (it vanished or broke after the reader validated it)
is not dropped silently: its item carries ``ok=False``, the loss ignores it and it is counted;
at evaluation it gets the training prior as its score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from fid_bench.errors import FidBenchError
from fid_bench.finetune.augment import Augment
from fid_bench.finetune.decoded import DecodedImages, choose_mode, decode_images, prepare_file
from fid_bench.finetune.threads import init_loader_worker

log = logging.getLogger(__name__)


def collate_uint8(items: list[tuple[np.ndarray, float, bool]]) -> dict[str, torch.Tensor]:
    """Stack ``[S, S, 3]`` arrays into a ``[B, 3, S, S]`` uint8 batch (channels-last strides)."""
    pixels = torch.from_numpy(np.stack([it[0] for it in items])).permute(0, 3, 1, 2)
    return {
        "pixels": pixels,
        "label": torch.tensor([it[1] for it in items], dtype=torch.float32),
        "ok": torch.tensor([it[2] for it in items], dtype=torch.bool),
    }


class ImageRows(Dataset):
    """Prepared (and optionally augmented) images of some rows of the samples table."""

    def __init__(
        self,
        paths: np.ndarray,
        labels: np.ndarray,
        size: int,
        *,
        decoded: DecodedImages | None = None,
        decoded_index: np.ndarray | None = None,
        augment: Augment | None = None,
        align: dict | None = None,
    ) -> None:
        self.paths = paths
        self.align = align
        self.labels = labels.astype(np.float32)
        self.size = size
        self.decoded = decoded
        self.decoded_index = decoded_index
        self.augment = augment if augment is not None and augment.active else None
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _generator(self) -> np.random.Generator:
        # torch seeds every worker differently each epoch (from the global seed): follow it, so
        # augmentation is reproducible and not repeated across workers
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def __getitem__(self, i: int) -> tuple[np.ndarray, float, bool]:
        if self.decoded is not None:
            k = self.decoded_index[i]
            ok = bool(self.decoded.ok[k])
            arr = np.array(self.decoded.pixels[k])
        else:
            prepared = prepare_file(self.paths[i], self.size, self.align)
            ok = prepared is not None
            arr = prepared if ok else np.zeros((self.size, self.size, 3), dtype=np.uint8)
        if ok and self.augment is not None:
            arr = self.augment(arr, self._generator())
        return arr, float(self.labels[i]), ok


class FinetuneDataModule(pl.LightningDataModule):
    """Train / val / test loaders for one fold of the samples table."""

    def __init__(
        self,
        table: pd.DataFrame,
        fold: Any,
        *,
        image_size: int,
        balance: Any,
        augment: Augment | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        decoded_cache: str = "auto",
        decoded_cache_max_gb: float = 2.0,
        cache_dir: Path | None = None,
        seed: int = 0,
        align: dict | None = None,
    ) -> None:
        super().__init__()
        self.align = align  # data.align: every image re-encoded the same way before the network
        self.table = table
        self.fold = fold
        self.image_size = int(image_size)
        self.augment = augment
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.cache_dir = cache_dir
        self.seed = int(seed)
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise FidBenchError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        if len(fold.train) == 0:
            raise FidBenchError(f"fold {fold.index}: no training rows")

        self.labels = table["label"].to_numpy()
        self.paths = table["path"].to_numpy()
        y = self.labels[fold.train]
        picked = np.asarray(balance.resample(y), dtype=np.int64)
        if picked.size == 0:
            raise FidBenchError(f"balance={getattr(balance, 'name', balance)!r} left no training rows")
        counts = np.bincount(picked, minlength=len(y))
        self.train_rows = np.asarray(fold.train)[counts > 0]
        self.train_draw_weights = counts[counts > 0].astype(np.float64) if counts.max() > 1 else None
        self.train_draws = int(picked.size)
        self.class_weights: dict[int, float] | None = balance.class_weights(y)

        # every row the fold touches, decoded once (train, val and test are all read every epoch or once)
        self.all_rows = np.unique(np.concatenate([fold.train, fold.val, fold.test]).astype(np.int64))
        self.decoded_mode = choose_mode(
            decoded_cache, len(self.all_rows), self.image_size, decoded_cache_max_gb
        )
        self.decoded: DecodedImages | None = None

    # -- Lightning hooks ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # one process per node builds the memmap; every rank then opens it in setup()
        if self.decoded_mode == "memmap":
            self._decode()

    def setup(self, stage: str | None = None) -> None:
        if self.decoded_mode != "off" and self.decoded is None:
            self._decode()

    def _decode(self) -> None:
        rows = self.all_rows
        self.decoded = decode_images(
            self.paths[rows].tolist(),
            self.table["sha1"].to_numpy()[rows].tolist(),
            self.image_size,
            mode=self.decoded_mode,
            cache_dir=self.cache_dir,
            num_workers=self.num_workers,
            align=self.align,
        )
        n_bad = int((~self.decoded.ok).sum())
        if n_bad:
            log.warning(
                "%d of %d images could not be decoded; they are ignored in training", n_bad, len(rows)
            )

    def dataset(self, rows: np.ndarray, *, train: bool = False) -> ImageRows:
        rows = np.asarray(rows, dtype=np.int64)
        index = None
        if self.decoded is not None:
            index = np.searchsorted(self.all_rows, rows)
            if index.size and not np.array_equal(
                self.all_rows[np.minimum(index, len(self.all_rows) - 1)], rows
            ):
                raise ValueError("rows outside the fold were requested from the decoded store")
        return ImageRows(
            self.paths[rows],
            self.labels[rows],
            self.image_size,
            decoded=self.decoded,
            decoded_index=index,
            augment=self.augment if train else None,
            align=self.align,
        )

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_uint8,
            worker_init_fn=init_loader_worker,  # one torch thread; Ctrl-C/SIGTERM: one line, not tracebacks
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset(self.train_rows, train=True)
        if self.train_draw_weights is None:
            return self._loader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=False)
        sampler = WeightedRandomSampler(
            torch.as_tensor(self.train_draw_weights),
            num_samples=self.train_draws,
            replacement=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return self._loader(dataset, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.fold.val), batch_size=self.eval_batch_size, shuffle=False)

    def eval_dataloader(self, rows: np.ndarray) -> DataLoader:
        """A plain in-order loader for scoring ``rows`` after training (no workers kept alive)."""
        return DataLoader(
            self.dataset(rows),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_uint8,
            worker_init_fn=init_loader_worker,
        )
