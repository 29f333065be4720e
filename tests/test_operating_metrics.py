"""Operating-point and calibration metrics: hand-computed cases, scikit-learn's ROC points, and
known values for two equal-variance normal score distributions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import (
    brier_score,
    compute_metrics,
    equal_error_rate,
    expected_calibration_error,
    reliability_bins,
    tpr_at_fpr,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_tpr_at_fpr_hand_computed() -> None:
    neg = [0.9, 0.8, 0.3, 0.2, 0.1]
    pos = [0.95, 0.85, 0.5, 0.25]
    y = [0] * 5 + [1] * 4
    s = neg + pos
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(1 / 4)  # only 0.95 beats every real image
    assert tpr_at_fpr(y, s, 0.2) == pytest.approx(2 / 4)  # one false positive (0.9) allowed
    assert tpr_at_fpr(y, s, 0.39) == pytest.approx(2 / 4)  # still one: floor(0.39 * 5) = 1
    assert tpr_at_fpr(y, s, 0.4) == pytest.approx(3 / 4)
    assert tpr_at_fpr(y, s, 1.0) == 1.0


def test_tpr_at_fpr_never_exceeds_the_budget_with_ties() -> None:
    # two real images tie at 0.5 with a generated one: cutting at 0.5 would make FPR 0.5 > 0.25
    y = [0, 0, 0, 0, 1, 1]
    s = [0.5, 0.5, 0.1, 0.1, 0.5, 0.9]
    assert tpr_at_fpr(y, s, 0.25) == pytest.approx(0.5)
    assert tpr_at_fpr(y, s, 0.5) == pytest.approx(1.0)


def test_tpr_at_fpr_matches_the_best_roc_point_within_the_budget() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 157)
        y[:2] = (0, 1)
        s = np.round(rng.uniform(0, 1, y.size) * 0.6 + 0.4 * y, 2)  # rounded: many ties
        fpr_pts, tpr_pts, _ = roc_curve(y, s, drop_intermediate=False)
        for target in (0.01, 0.05, 0.1, 0.3):
            assert tpr_at_fpr(y, s, target) == pytest.approx(tpr_pts[fpr_pts <= target + 1e-12].max())


def test_operating_point_and_eer_known_values_for_normal_scores() -> None:
    # real ~ N(0, 1), generated ~ N(2, 1): EER = Phi(-1), TPR at FPR 5 % = Phi(2 - 1.6449)
    rng = np.random.default_rng(0)
    n = 40_000
    x = np.r_[rng.normal(0, 1, n), rng.normal(2, 1, n)]
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    s = _sigmoid(x)  # a monotone map: neither metric depends on the scale
    assert equal_error_rate(y, s) == pytest.approx(_normal_cdf(-1.0), abs=0.005)
    assert tpr_at_fpr(y, s, 0.05) == pytest.approx(_normal_cdf(2 - 1.6448536), abs=0.01)
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(_normal_cdf(2 - 2.3263479), abs=0.015)


def test_eer_hand_computed_and_extremes() -> None:
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = 0.5 at the third
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == pytest.approx(0.5)
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2]) == 1.0
    # one real image above one of three generated ones: the crossing is interpolated
    # points (0,0) (0,1/3) (0,2/3) (1/2,2/3) (1/2,1) (1,1); FNR - FPR goes 1/3 -> -1/6 between
    # (0,2/3) and (1/2,2/3): a = (1/3) / (1/2) = 2/3, EER = 2/3 * 1/2 = 1/3
    assert equal_error_rate([0, 0, 1, 1, 1], [0.1, 0.5, 0.3, 0.8, 0.9]) == pytest.approx(1 / 3)
    assert math.isnan(equal_error_rate([1, 1], [0.2, 0.3]))


def test_ece_and_brier_hand_computed() -> None:
    y = [0, 1, 1, 1]
    s = [0.1, 0.2, 0.8, 0.9]
    # two bins: [0, .5) mean .15 vs rate .5 (gap .35); [.5, 1] mean .85 vs rate 1 (gap .15)
    assert expected_calibration_error(y, s, 2) == pytest.approx((2 * 0.35 + 2 * 0.15) / 4)
    assert brier_score(y, s) == pytest.approx((0.01 + 0.64 + 0.04 + 0.01) / 4)
    bins = reliability_bins(y, s, 2)
    assert bins["n"].tolist() == [2, 2]
    assert bins["positive_rate"].tolist() == pytest.approx([0.5, 1.0])
    assert bins["mean_score"].tolist() == pytest.approx([0.15, 0.85])


def test_score_of_one_lands_in_the_last_bin_and_empty_bins_are_nan() -> None:
    bins = reliability_bins([1, 0], [1.0, 0.0], 4)
    assert bins["n"].tolist() == [1, 0, 0, 1]
    assert math.isnan(bins["mean_score"][1])
    assert expected_calibration_error([1, 0], [1.0, 0.0], 4) == 0.0


def test_calibrated_scores_have_small_ece_and_overconfident_ones_large() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 50_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert expected_calibration_error(y, p, 10) < 0.01
    # pushed to the extremes: a score of 0.95 where 0.7 of images are generated
    pushed = np.where(p >= 0.5, 0.95, 0.05)
    assert expected_calibration_error(y, pushed, 10) == pytest.approx(0.2, abs=0.01)


def test_bad_bin_count_is_one_clear_error() -> None:
    with pytest.raises(FidBenchError, match="calibration_bins"):
        reliability_bins([0, 1], [0.1, 0.9], 0)


def test_compute_metrics_reports_them_with_nan_when_a_class_is_missing() -> None:
    m = compute_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], calibration_bins=2)
    assert m["eer"] == pytest.approx(0.5)
    # hand-computed: [0, .5) holds 0.1 and 0.4 (mean .25, rate .5), [.5, 1] 0.6 and 0.9 (mean .75, rate .5)
    assert m["ece"] == pytest.approx(0.25)
    one_class = compute_metrics([1, 1], [0.2, 0.9], warn=False)
    assert math.isnan(one_class["tpr_at_fpr_1pct"]) and math.isnan(one_class["eer"])
    assert one_class["brier"] == pytest.approx((0.64 + 0.01) / 2)


def test_reliability_png_draws_the_ece_bins(tmp_path) -> None:
    from fid_bench.evaluation.plots import reliability_png

    scores = pd.DataFrame(
        {"label": [0, 1, 1, 1, 0], "score": [0.1, 0.2, 0.8, 0.9, 0.5], "split": ["test"] * 4 + ["val"]}
    )
    bins = reliability_png(scores, tmp_path / "r.png", 2)
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    assert bins["n"].tolist() == [2, 2]  # the validation row is not drawn
