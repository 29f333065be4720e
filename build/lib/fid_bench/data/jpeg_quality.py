"""JPEG quality estimated from a file's quantisation tables (read from the header, no decode).

Method: libjpeg (IJG) and almost every encoder built on it derive their tables from the two
example tables of the JPEG standard (Annex K), scaled by a quality setting q in 1..100::

    scale = 5000 / q        if q < 50
            200 - 2 * q     otherwise
    entry = clamp((base * scale + 50) // 100, 1, 255)

The estimate is the q whose scaled luminance table is nearest (sum of absolute differences over
the 64 entries) to the file's table 0; ties go to the lower q. For files written by libjpeg-based
encoders (Pillow, OpenCV, most cameras' software) the estimate is exact; for encoders with their
own tables it is the closest IJG-equivalent quality, and ``table_distance`` says how far off the
best match still is (0 = an exact IJG table).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

# Annex K tables in natural (row-major) order, the order Pillow reports ``Image.quantization`` in.
IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
IJG_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def ijg_table(quality: int, *, chroma: bool = False) -> np.ndarray:
    """The 64-entry table libjpeg writes for ``quality`` (1..100), natural order, baseline-clamped."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    q = int(quality)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    base = np.asarray(IJG_CHROMINANCE if chroma else IJG_LUMINANCE, dtype=np.int64)
    return np.clip((base * scale + 50) // 100, 1, 255)


@lru_cache(maxsize=1)
def _luminance_tables() -> np.ndarray:
    return np.stack([ijg_table(q) for q in range(1, 101)])  # row i = quality i + 1


def table_distance(table: Sequence[int]) -> tuple[int, int]:
    """(nearest IJG quality, sum of absolute differences to its luminance table)."""
    t = np.asarray(table, dtype=np.int64)
    if t.shape != (64,):
        raise ValueError(f"a quantisation table has 64 entries, got shape {t.shape}")
    dist = np.abs(_luminance_tables() - t).sum(axis=1)
    best = int(np.argmin(dist))  # argmin takes the first minimum: ties go to the lower quality
    return best + 1, int(dist[best])


def estimate_quality(quantization: dict[int, Sequence[int]] | None) -> int | None:
    """Estimated quality of a JPEG from Pillow's ``img.quantization`` (None when there is no table 0)."""
    if not quantization or 0 not in quantization:
        return None
    return table_distance(quantization[0])[0]
