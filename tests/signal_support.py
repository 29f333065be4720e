"""A deliberately slow encoder, so a test can interrupt a job while features are being extracted."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fid_bench.features.spectrum import SpectrumEncoder

#: file the encoder appends one line to per encoded batch (the test waits for it to grow)
MARKER_ENV = "FID_BENCH_TEST_ENCODED"


class SlowSpectrumEncoder(SpectrumEncoder):
    """``SpectrumEncoder`` that takes a while per batch and reports each batch it encoded."""

    def encode(self, batch: Any) -> np.ndarray:
        feats = super().encode(batch)
        marker = os.environ.get(MARKER_ENV)
        if marker:
            with open(marker, "a") as fp:
                fp.write(f"{len(feats)}\n")
        time.sleep(0.3)
        return feats
