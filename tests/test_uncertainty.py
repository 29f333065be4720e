"""Bootstrap intervals: contain the estimate, narrow with more data, deterministic, and fast enough."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from fid_bench.errors import FidBenchError
from fid_bench.evaluation.uncertainty import (
    bootstrap_ci,
    bootstrap_distribution,
    bootstrap_metrics,
    f1_at,
    roc_auc,
)


def _scores(n: int, seed: int = 0, separation: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels (1 in 3 positive) and rounded scores (many ties), like real detectors give."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 1 / 3).astype(int)
    s = np.clip(rng.normal(0.4 + separation * y, 0.2), 0, 1).round(2)
    return y, s


def test_roc_auc_matches_sklearn_with_ties() -> None:
    y, s = _scores(3000, seed=1)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))


def test_batched_metrics_equal_the_plain_loop_on_the_same_resamples() -> None:
    y, s = _scores(800, seed=2)
    fast_auc = bootstrap_distribution(y, s, roc_auc, n_boot=150, seed=7)
    slow_auc = bootstrap_distribution(y, s, lambda a, b: roc_auc_score(a, b), n_boot=150, seed=7)
    np.testing.assert_allclose(fast_auc, slow_auc, atol=1e-12)
    f1 = f1_at(0.55)
    fast_f1 = bootstrap_distribution(y, s, f1, n_boot=150, seed=7)
    slow_f1 = bootstrap_distribution(y, s, lambda a, b: f1_score(a, b >= 0.55), n_boot=150, seed=7)
    np.testing.assert_allclose(fast_f1, slow_f1, atol=1e-12)
    assert fast_auc.std() > 0  # the resamples really differ


def test_interval_contains_estimate_and_narrows_with_more_data() -> None:
    widths = []
    for n in (200, 2000, 20000):
        y, s = _scores(n, seed=3)
        low, high = bootstrap_ci(y, s, roc_auc, n_boot=400)
        assert low < roc_auc(y, s) < high
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]  # roughly 1/sqrt(n): x3.2 per step
    y, s = _scores(2000, seed=3)
    low90, high90 = bootstrap_ci(y, s, roc_auc, n_boot=400, alpha=0.10)
    low95, high95 = bootstrap_ci(y, s, roc_auc, n_boot=400, alpha=0.05)
    assert low95 <= low90 and high90 <= high95


def test_deterministic_per_seed_and_seed_matters() -> None:
    y, s = _scores(1000, seed=4)
    a = bootstrap_ci(y, s, roc_auc, n_boot=300, seed=11)
    assert bootstrap_ci(y, s, roc_auc, n_boot=300, seed=11) == a
    assert bootstrap_ci(y, s, roc_auc, n_boot=300, seed=12) != a


def test_stratified_resamples_keep_class_counts() -> None:
    y = np.array([1] * 3 + [0] * 97)
    s = np.linspace(0, 1, 100)
    seen = []
    # every resample must be able to compute AUC: 3 positives are always drawn
    dist = bootstrap_distribution(y, s, lambda a, b: seen.append(int(a.sum())) or roc_auc(a, b), n_boot=200)
    assert set(seen) == {3}
    assert not np.isnan(dist).any()


def test_coverage_of_a_known_auc() -> None:
    # scores drawn from two normals with a known population AUC; the 95 % interval should cover it
    # in most of 40 independent samples (binomial: fewer than 33 covers would be very unlikely)
    from scipy.stats import norm

    true_auc = norm.cdf(1.0 / np.sqrt(2))  # separation 1 sd
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        y = np.r_[np.ones(150, int), np.zeros(150, int)]
        s = np.r_[rng.normal(1.0, 1.0, 150), rng.normal(0.0, 1.0, 150)]
        low, high = bootstrap_ci(y, s, roc_auc, n_boot=300, seed=seed)
        covered += low <= true_auc <= high
    assert covered >= 33


def test_bootstrap_metrics_uses_test_rows_only() -> None:
    y, s = _scores(600, seed=5)
    scores = pd.DataFrame({"id": range(600), "label": y, "score": s, "split": "test", "group": "", "fold": 0})
    # validation rows that would wreck the interval if they were used
    val = scores.assign(split="val", label=1 - scores["label"])
    out = bootstrap_metrics(pd.concat([scores, val]), threshold=0.5, n_boot=300)
    assert set(out) == {"roc_auc_ci_low", "roc_auc_ci_high", "f1_ci_low", "f1_ci_high"}
    assert out["roc_auc_ci_low"] < roc_auc(y, s) < out["roc_auc_ci_high"]
    f1 = f1_score(y, s >= 0.5)
    assert out["f1_ci_low"] < f1 < out["f1_ci_high"]
    assert out == bootstrap_metrics(scores, threshold=0.5, n_boot=300)
    no_thr = bootstrap_metrics(scores, threshold=float("nan"), n_boot=50)
    assert np.isnan(no_thr["f1_ci_low"]) and not np.isnan(no_thr["roc_auc_ci_low"])


def test_undefined_and_bad_input() -> None:
    one_class = pd.DataFrame({"label": [1, 1, 1], "score": [0.2, 0.5, 0.9], "split": "test"})
    out = bootstrap_metrics(one_class, threshold=0.5, n_boot=20)
    assert all(np.isnan(v) for v in out.values())
    with pytest.raises(FidBenchError, match="lacks column"):
        bootstrap_metrics(pd.DataFrame({"label": [0, 1]}), threshold=0.5)
    with pytest.raises(FidBenchError, match="alpha"):
        bootstrap_ci(np.array([0, 1]), np.array([0.1, 0.9]), roc_auc, alpha=1.5)
    with pytest.raises(FidBenchError, match="equal length"):
        bootstrap_ci(np.array([0, 1, 1]), np.array([0.1, 0.9]), roc_auc)
