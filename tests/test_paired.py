"""Paired tests: DeLong against a brute-force computation written here, the Mann-Whitney relation
and its behaviour under the null; the paired bootstrap; Holm against hand computations; row pairing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu, norm

from fid_bench.errors import FidBenchError
from fid_bench.evaluation.paired import (
    accuracy_at,
    compare_scores,
    delong_covariance,
    delong_test,
    holm,
    pair_test_rows,
    paired_bootstrap,
    tied_with_top,
)


def brute_force_delong(y: np.ndarray, s_a: np.ndarray, s_b: np.ndarray) -> tuple[float, float]:
    """AUC difference and its DeLong variance from the full pair matrix psi (m x n)."""
    v10, v01, aucs = [], [], []
    for s in (s_a, s_b):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = len(v10[0]), len(v01[0])
    s10 = np.cov(np.vstack(v10))
    s01 = np.cov(np.vstack(v01))
    c = np.array([1.0, -1.0])
    return aucs[0] - aucs[1], float(c @ (s10 / m + s01 / n) @ c)


def test_delong_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    a = np.round(np.clip(0.5 * y + rng.uniform(0, 0.6, 80), 0, 1), 1)  # coarse: many ties
    b = np.round(np.clip(0.2 * y + 0.5 * a + rng.uniform(0, 0.4, 80), 0, 1), 1)
    diff, var = brute_force_delong(y, a, b)
    res = delong_test(y, a, b)
    assert res.diff == pytest.approx(diff)
    assert res.se == pytest.approx(math.sqrt(var))
    assert res.p_value == pytest.approx(2 * norm.sf(abs(diff) / math.sqrt(var)))
    assert (res.ci_low, res.ci_high) == pytest.approx((diff - 1.959964 * res.se, diff + 1.959964 * res.se))


def test_delong_auc_is_the_mann_whitney_statistic() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(37, int), np.ones(23, int)]
    s = rng.uniform(0, 1, 60) + 0.3 * y
    s = np.round(s / 1.3, 2)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    aucs, cov = delong_covariance(y, [s])
    assert aucs[0] == pytest.approx(u / (23 * 37))
    assert cov[0, 0] > 0


def test_hand_computed_small_case() -> None:
    # positives 0.8, 0.6; negatives 0.7, 0.2 -- detector A: psi = [[1, 1], [0, 1]]; B: perfect
    y = np.array([1, 1, 0, 0])
    a = np.array([0.8, 0.6, 0.7, 0.2])
    b = np.array([0.8, 0.75, 0.7, 0.2])
    res = delong_test(y, a, b)
    # V10_A = [1, .5], V01_A = [.5, 1]; V10_B = V01_B = [1, 1] (no variance)
    # var = var(V10_A)/2 + var(V01_A)/2 = 0.125/2 + 0.125/2 = 0.125
    assert res.a == pytest.approx(0.75) and res.b == pytest.approx(1.0)
    assert res.se == pytest.approx(math.sqrt(0.125))
    assert res.p_value == pytest.approx(2 * norm.sf(0.25 / math.sqrt(0.125)))


def test_identical_detectors_differ_by_nothing() -> None:
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.1, 0.7, 0.4, 0.3, 0.9])
    res = delong_test(y, s, s)
    assert (res.diff, res.se, res.p_value) == (0.0, 0.0, 1.0)
    # a monotone transform ranks every pair the same way: same AUC, nothing to test
    assert delong_test(y, s, s**2).p_value == 1.0


def test_delong_false_positive_rate_under_the_null_and_power() -> None:
    rng = np.random.default_rng(7)
    rejections, detected = 0, 0
    trials = 300
    for _ in range(trials):
        y = np.r_[np.zeros(60, int), np.ones(60, int)]
        latent = rng.normal(0, 1, 120) + 2.0 * y  # shared difficulty: the two runs are correlated
        a = latent + rng.normal(0, 0.5, 120)
        b = latent + rng.normal(0, 0.5, 120)  # same quality as a (ROC-AUC about 0.9)
        c = latent + rng.normal(0, 3, 120)  # much noisier (about 0.67)
        rejections += delong_test(y, a, b).p_value < 0.05
        detected += delong_test(y, a, c).p_value < 0.05
    assert 0.02 <= rejections / trials <= 0.09
    assert detected / trials > 0.8


def test_paired_bootstrap_of_identical_runs_is_zero() -> None:
    y = np.array([0, 1] * 30)
    s = np.linspace(0.05, 0.95, 60)
    res = paired_bootstrap(y, s, s, accuracy_at(0.5), name="accuracy", n_boot=200)
    assert (res.diff, res.ci_low, res.ci_high, res.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_sees_a_consistent_small_difference() -> None:
    # B is A with three rows made wrong: every resample has B no better than A
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    a = np.where(y == 1, 0.9, 0.1).astype(float)
    b = a.copy()
    b[:3] = 1.0 - b[:3]
    res = paired_bootstrap(y, a, b, accuracy_at(0.5), name="accuracy", n_boot=500, seed=1)
    assert res.diff == pytest.approx(3 / 400)
    assert res.ci_low >= 0.0 and res.ci_high > 0.0
    # and the same resamples: an unpaired difference of two independent bootstraps would go negative
    assert res.se < 0.01


def test_holm_hand_computed() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2]).tolist() == [0.2]
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
    out = holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_tied_with_top_marks_the_indistinguishable_runs() -> None:
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(300, int), np.ones(300, int)]
    latent = rng.normal(0, 1, 600) + 1.5 * y
    scores = {
        "strong": latent + rng.normal(0, 0.5, 600),
        "also_strong": latent + rng.normal(0, 0.5, 600),
        "weak": latent + rng.normal(0, 3, 600),
    }
    table = tied_with_top(y, scores).set_index("run")
    assert table.loc[["strong", "also_strong"], "tied_with_top"].all()
    assert not table.loc["weak", "tied_with_top"]
    top = table["roc_auc"].idxmax()
    assert math.isnan(table.loc[top, "p_value"])
    # Holm over two comparisons: the smaller p-value is doubled
    others = table.drop(index=top)
    assert others["p_adjusted"].min() == pytest.approx(min(2 * others["p_value"].min(), 1.0))


def _frame(ids, labels, scores, split="test") -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids, "label": labels, "score": scores, "split": split})
    return frame.assign(sha1="h-" + frame["id"])  # each image's content hash


def test_pair_test_rows_matches_by_id_and_refuses_different_rows() -> None:
    a = pd.concat([_frame(["x", "y", "z"], [0, 1, 1], [0.1, 0.8, 0.6]), _frame(["v"], [1], [0.5], "val")])
    b = _frame(["z", "x", "y"], [1, 0, 1], [0.7, 0.2, 0.9])
    pairs = pair_test_rows(a, b)
    assert pairs["id"].tolist() == ["x", "y", "z"]
    assert pairs["score_b"].tolist() == [0.2, 0.9, 0.7]
    with pytest.raises(FidBenchError, match="not scored on the same test rows: 1 id"):
        pair_test_rows(a, _frame(["x", "y", "w"], [0, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(FidBenchError, match="disagree on the label of 1"):
        pair_test_rows(a, _frame(["x", "y", "z"], [0, 1, 0], [0.1, 0.2, 0.3]))
    with pytest.raises(FidBenchError, match="appears more than once"):
        pair_test_rows(a, _frame(["x", "x", "y", "z"], [0, 0, 1, 1], [0.1, 0.1, 0.2, 0.3]))


def test_compare_scores_reports_every_metric() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    pairs = pd.DataFrame(
        {
            "id": np.arange(200).astype(str),
            "label": y,
            "score_a": np.clip(0.6 * y + rng.uniform(0, 0.4, 200), 0, 1),
            "score_b": rng.uniform(0, 1, 200),
        }
    )
    results = {r.metric: r for r in compare_scores(pairs, 0.5, 0.5, n_boot=200)}
    assert set(results) == {
        "roc_auc",
        "f1_at_threshold",
        "accuracy_at_threshold",
        "tpr_at_fpr_1pct",
        "tpr_at_fpr_5pct",
    }
    assert results["roc_auc"].method == "DeLong" and results["roc_auc"].p_value < 1e-6
    assert results["accuracy_at_threshold"].ci_low > 0
    with pytest.raises(FidBenchError, match="threshold"):
        compare_scores(pairs, float("nan"), 0.5)


def test_paired_bootstrap_p_counts_resamples_without_a_difference_once() -> None:
    """B is A with one row wrong: a resample differs (A better) exactly when it draws that row,
    else the difference is 0. The mid-p is P(d = 0) = P(row not drawn) = (1 - 1/n)^n, not twice it."""
    y = np.array([0, 1] * 25)
    a = np.where(y == 1, 0.9, 0.1).astype(float)
    b = a.copy()
    b[0] = 0.95
    res = paired_bootstrap(y, a, b, accuracy_at(0.5), name="accuracy", n_boot=2000, seed=3)
    assert res.ci_low == 0.0 and res.ci_high > 0.0
    assert res.p_value == pytest.approx((1 - 1 / 50) ** 50, abs=0.04)  # 0.364; doubled it would be 0.73


def test_paired_report_without_a_threshold_keeps_delong_and_operating_points() -> None:
    """A run that logged no threshold (not written by fid_bench): no F1/accuracy rows and a note;
    with thresholds the report's rows are ``compare_scores``'s."""
    from types import SimpleNamespace

    from fid_bench.tracking.paired_runs import paired_report

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)

    def frame(s: np.ndarray) -> pd.DataFrame:
        ids = [str(i) for i in range(300)]
        return pd.DataFrame({"id": ids, "label": y, "score": s, "split": "test", "sha1": ids})

    sa, sb = np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1), rng.uniform(0, 1, 300)

    def run(run_id: str, **metrics: float):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(metrics=metrics))

    kw = {"n_boot": 100, "seed": 1}
    lacking = paired_report(
        (run("a" * 32, threshold=0.5), run("b" * 32)), (frame(sa), frame(sb)), ("A", "B"), **kw
    )
    assert [r.metric for r in lacking.results] == ["roc_auc", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct"]
    assert lacking.notes == ["F1 and accuracy not compared: run B (bbbbbbbb) logged no decision threshold."]
    both = paired_report(
        (run("a" * 32, threshold=0.5), run("b" * 32, threshold=0.4)), (frame(sa), frame(sb)), ("A", "B"), **kw
    )
    pairs = pd.DataFrame({"id": frame(sa)["id"], "label": y, "score_a": sa, "score_b": sb})
    assert [r.as_dict() for r in both.results] == [r.as_dict() for r in compare_scores(pairs, 0.5, 0.4, **kw)]
    assert not both.notes


def test_delong_placements_with_one_row_of_a_class_and_refusal_with_none() -> None:
    from fid_bench.evaluation.paired import placement_values

    y = np.array([1, 0, 0, 0])  # a single generated row is enough
    v10, v01 = placement_values(y, np.array([0.6, 0.2, 0.6, 0.9]))
    assert v10.tolist() == pytest.approx([(1 + 0.5) / 3])  # outscores one negative, ties one
    assert v01.tolist() == pytest.approx([1.0, 0.5, 0.0])
    with pytest.raises(FidBenchError, match="got 0 generated and 3 real rows"):
        placement_values(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))
