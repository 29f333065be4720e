"""Speed of two hot paths that unit tests used to time: reading the feature cache, bootstrap intervals.

Unit tests check these paths' results only; their speed is measured here (figures go to
docs/BENCHMARKS.md by hand, with the command). Usage:

    python benchmarks/core.py
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from fid_bench.evaluation.uncertainty import bootstrap_ci, roc_auc
from fid_bench.features.cache import FeatureCache


def cache_read(n: int = 120_000, dim: int = 32) -> float:
    """Seconds to open a consolidated cache of ``n`` rows in a new reader and read them all, reversed."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp), "bench-identity")
        keys = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(n)]
        feats = np.random.default_rng(0).random((n, dim), dtype=np.float32)
        for start in range(0, n, 10_000):
            cache.put(keys[start : start + 10_000], feats[start : start + 10_000])
        cache.consolidate(force=True)
        t0 = time.perf_counter()
        reader = FeatureCache(Path(tmp), "bench-identity")
        assert reader.missing(keys[::-1]) == []
        reader.get(keys[::-1])
        return time.perf_counter() - t0


def bootstrap(n: int = 20_000, n_boot: int = 1000) -> float:
    """CPU seconds of ``n_boot`` ROC-AUC bootstrap resamples of ``n`` rows."""
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    t0 = time.process_time()
    bootstrap_ci(y, s, roc_auc, n_boot=n_boot)
    return time.process_time() - t0


def main() -> None:
    print(f"feature cache: read 120,000 x 32 rows in a new reader: {cache_read():.2f} s wall")
    print(f"bootstrap: 1000 ROC-AUC resamples of 20,000 rows: {bootstrap():.2f} s CPU")


if __name__ == "__main__":
    main()
