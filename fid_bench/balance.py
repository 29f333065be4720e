"""Class balancing strategies (config group ``balance``), shared by both tracks.

A strategy is applied to the labels of a TRAINING fold only; validation and test rows are never
resampled or reweighted, so held-out metrics describe the data as it is.

Every strategy answers three questions about training labels ``y``:

``resample(y)``
    positions into ``y`` to train on (may repeat or drop rows). The features track indexes its
    matrix with them; the fine-tuning track builds its sampler from them.
``class_weights(y)``
    ``{label: weight}`` or ``None``. Inverse class frequency, normalised so that the weighted row
    count equals ``len(y)`` (a loss keeps its scale). The fine-tuning track passes it to its loss.
``sample_weight(y)``
    one weight per row (``class_weights`` looked up per label) or ``None``.

Numpy only: the module is imported by the classifier track and the Lightning track alike.
Resampling is deterministic for a given seed and label vector.
"""

from __future__ import annotations

import logging

import numpy as np

from fid_bench.errors import FidBenchError

log = logging.getLogger(__name__)


def _check_labels(y: np.ndarray) -> np.ndarray:
    """Return ``y`` as a 1-D int array; unknown labels (-1) or fractions are a configuration error."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise FidBenchError(f"balance: labels must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.mod(arr, 1) == 0):
            raise FidBenchError(f"balance: labels must be integers 0/1, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    bad = np.setdiff1d(np.unique(arr), [0, 1])
    if bad.size:
        raise FidBenchError(
            f"balance: training labels must be 0 (real) or 1 (generated), got {bad.tolist()}; "
            "unlabelled rows (-1) cannot be trained on"
        )
    return arr.astype(np.int64)


class BalanceStrategy:
    """No balancing: every training row once, unweighted. Subclasses change one answer each."""

    name: str = "none"

    def resample(self, y: np.ndarray) -> np.ndarray:
        return np.arange(len(_check_labels(y)), dtype=np.int64)

    def class_weights(self, y: np.ndarray) -> dict[int, float] | None:
        _check_labels(y)
        return None

    def sample_weight(self, y: np.ndarray) -> np.ndarray | None:
        weights = self.class_weights(y)
        if weights is None:
            return None
        arr = _check_labels(y)
        lookup = np.zeros(2, dtype=np.float64)
        for label, w in weights.items():
            lookup[label] = w
        return lookup[arr]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoBalance(BalanceStrategy):
    """Train on the data as it is."""

    name = "none"


class ClassWeight(BalanceStrategy):
    """Keep every row once; weight each class by ``n / (n_classes * count)``.

    With this normalisation the weights of all rows sum to ``n``, and each present class carries
    the same total weight ``n / n_classes``.
    """

    name = "class_weight"

    def class_weights(self, y: np.ndarray) -> dict[int, float] | None:
        arr = _check_labels(y)
        if arr.size == 0:
            return None
        labels, counts = np.unique(arr, return_counts=True)
        n, k = arr.size, labels.size
        return {int(c): float(n / (k * m)) for c, m in zip(labels, counts, strict=True)}


class _SeededResample(BalanceStrategy):
    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise FidBenchError(f"balance={self.name}: seed must be an integer, got {seed!r}")
        self.seed = int(seed)

    def _by_class(self, y: np.ndarray) -> list[np.ndarray] | None:
        arr = _check_labels(y)
        groups = [np.flatnonzero(arr == c) for c in np.unique(arr)]
        if len(groups) < 2:
            # nothing to balance against; the caller decides whether one class is an error
            log.warning("balance=%s: training labels hold a single class; rows left as they are", self.name)
            return None
        return groups

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


class Oversample(_SeededResample):
    """Repeat rows of the smaller classes until every class is as large as the largest.

    Each minority row is repeated ``target // count`` times and a random subset (drawn without
    replacement) once more, so repeat counts differ by at most one: less variance than drawing
    every extra row with replacement.
    """

    name = "oversample"

    def resample(self, y: np.ndarray) -> np.ndarray:
        groups = self._by_class(y)
        if groups is None:
            return np.arange(len(y), dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        target = max(g.size for g in groups)
        parts = []
        for g in groups:
            reps, extra = divmod(target, g.size)
            parts.append(np.tile(g, reps))
            if extra:
                parts.append(rng.choice(g, size=extra, replace=False))
        return np.sort(np.concatenate(parts)).astype(np.int64)


class Undersample(_SeededResample):
    """Keep a random subset (without replacement) of the larger classes, as large as the smallest."""

    name = "undersample"

    def resample(self, y: np.ndarray) -> np.ndarray:
        groups = self._by_class(y)
        if groups is None:
            return np.arange(len(y), dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        target = min(g.size for g in groups)
        parts = [g if g.size == target else rng.choice(g, size=target, replace=False) for g in groups]
        return np.sort(np.concatenate(parts)).astype(np.int64)
