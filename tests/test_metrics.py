"""Held-out metrics: hand-computed cases, agreement with scikit-learn, degenerate inputs, fold aggregation."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from fid_bench.errors import FidBenchError
from fid_bench.evaluation.metrics import (
    LOG_LOSS_EPS,
    aggregate_folds,
    best_f1_threshold,
    compute_metrics,
    evaluate_scores,
    tpr_at_fpr,
)


def frame(val: list[tuple[int, float]], test: list[tuple[int, float]]) -> pd.DataFrame:
    rows = [(f"v{i}", y, s, "val") for i, (y, s) in enumerate(val)]
    rows += [(f"t{i}", y, s, "test") for i, (y, s) in enumerate(test)]
    df = pd.DataFrame(rows, columns=["id", "label", "score", "split"])
    df["group"] = ""
    df["fold"] = 0
    return df


def test_hand_computed_tiny_case() -> None:
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.6, 0.4, 0.8, 0.9]
    m = compute_metrics(y, s, 0.5)
    # at 0.5: predicted 1 for 0.6, 0.8, 0.9 -> TP=2, FP=1, FN=1, TN=1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # pairs (pos, neg) ranked correctly: 0.4>0.1, 0.8>both, 0.9>both, 0.4<0.6 -> 5 of 6
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # AP: ranks 0.9(1) 0.8(1) 0.6(0) 0.4(1): (1 + 1 + 3/4) / 3
    assert m["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)
    expected_ll = -np.mean(np.log([0.9, 0.4, 0.4, 0.8, 0.9]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert m["n"] == 5
    assert m["positive_rate"] == pytest.approx(0.6)


def test_agrees_with_sklearn_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0.01, 0.99)
    for threshold in (0.2, 0.5, 0.73):
        m = compute_metrics(y, s, threshold)
        pred = (s >= threshold).astype(int)
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
        assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, s))
        assert m["log_loss"] == pytest.approx(skm.log_loss(y, s))
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
        assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
        assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred))


def test_log_loss_clips_certain_mistakes() -> None:
    m = compute_metrics([1, 0], [0.0, 0.0])
    # one certain mistake costs -log(eps), the certain hit costs -log(1 - eps)
    expected = (-math.log(LOG_LOSS_EPS) - math.log(1 - LOG_LOSS_EPS)) / 2
    assert m["log_loss"] == pytest.approx(expected)
    assert math.isfinite(m["log_loss"])


def test_best_f1_threshold_hand_case_and_brute_force() -> None:
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.6, 0.4, 0.8, 0.9]
    # cuts: >=0.9 F1=.5, >=0.8 .8, >=0.6 2/3, >=0.4 6/7, >=0.1 .75 -> cut at 0.4, midway to 0.1
    assert best_f1_threshold(y, s) == pytest.approx(0.25)
    # separated scores: the threshold sits in the middle of the gap, not on the lowest positive
    assert best_f1_threshold([0, 0, 1, 1], [0.01, 0.02, 0.9999, 1.0]) == pytest.approx(0.50995)
    # every row predicted positive at the best cut: the lowest score itself
    assert best_f1_threshold([1, 1, 0, 1], [0.9, 0.8, 0.7, 0.3]) == pytest.approx(0.3)

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(np.clip(0.25 * y + rng.uniform(0, 0.75, 200), 0, 1), 2)  # rounding makes ties
    t = best_f1_threshold(y, s)
    f1s = {c: skm.f1_score(y, (s >= c).astype(int)) for c in np.unique(s)}
    best = max(f1s.values())
    assert skm.f1_score(y, (s >= t).astype(int)) == pytest.approx(best)
    # ties in F1 go to the highest cut; t lies midway between it and the next lower score
    top = max(c for c, f in f1s.items() if f == pytest.approx(best))
    below = max(c for c in f1s if c < top)
    assert t == pytest.approx((top + below) / 2)


def test_best_f1_threshold_undefined_without_positives(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert math.isnan(best_f1_threshold([0, 0, 0], [0.1, 0.2, 0.3]))
        assert math.isnan(best_f1_threshold([], []))
    assert "no positive validation rows" in caplog.text
    assert "no validation rows" in caplog.text


def test_evaluate_scores_threshold_from_val_metrics_on_test() -> None:
    val = [(0, 0.1), (0, 0.6), (1, 0.4), (1, 0.8), (1, 0.9)]  # best F1 cut at 0.4 -> threshold 0.25
    test = [(0, 0.2), (0, 0.45), (1, 0.42), (1, 0.55), (1, 0.7), (0, 0.3)]
    m = evaluate_scores(frame(val, test))
    assert m["threshold"] == pytest.approx(0.25)
    y = np.array([y for y, _ in test])
    s = np.array([s for _, s in test])
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["f1"] == pytest.approx(skm.f1_score(y, (s >= 0.5).astype(int)))
    assert m["f1_at_threshold"] == pytest.approx(skm.f1_score(y, (s >= 0.25).astype(int)))
    assert m["f1_at_threshold"] != pytest.approx(m["f1"])
    assert (m["n_test"], m["n_val"], m["test_positive_rate"]) == (6, 5, 0.5)
    expected = {
        "threshold",
        "roc_auc",
        "average_precision",
        "f1",
        "f1_at_threshold",
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "log_loss",
        "tpr_at_fpr_1pct",
        "tpr_at_fpr_5pct",
        "eer",
        "ece",
        "brier",
        "n_test",
        "n_val",
        "test_positive_rate",
    }
    assert set(m) == expected


def test_test_labels_never_move_the_threshold() -> None:
    val = [(0, 0.1), (0, 0.6), (1, 0.4), (1, 0.8), (1, 0.9)]
    a = evaluate_scores(frame(val, [(0, 0.2), (1, 0.9)]))
    b = evaluate_scores(frame(val, [(1, 0.2), (0, 0.9), (1, 0.3)]))
    assert a["threshold"] == b["threshold"]


def test_one_class_in_test_gives_nan_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    val = [(0, 0.2), (1, 0.8)]
    with caplog.at_level(logging.WARNING):
        m = evaluate_scores(frame(val, [(0, 0.1), (0, 0.7), (0, 0.3)]))
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["average_precision"])
    assert math.isnan(m["recall"])
    assert math.isnan(m["balanced_accuracy"])
    # still defined: accuracy, log loss, and precision (one false positive, no true positive)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["precision"] == 0.0
    assert math.isfinite(m["log_loss"])
    assert "roc_auc" in caplog.text
    # said once: the second pass at the validation threshold does not repeat it
    assert caplog.text.count("metrics undefined") == 1


def test_tpr_at_fpr_with_a_single_negative() -> None:
    # one negative (0.5), no false positive allowed: positives strictly above it count
    assert tpr_at_fpr([0, 1, 1], [0.5, 0.2, 0.9], 0.0) == 0.5
    assert tpr_at_fpr([0, 1, 1], [0.5, 0.2, 0.9], 1.0) == 1.0


def test_empty_val_gives_nan_threshold_but_test_metrics(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        m = evaluate_scores(frame([], [(0, 0.1), (1, 0.9)]))
    assert math.isnan(m["threshold"])
    assert math.isnan(m["f1_at_threshold"])
    assert m["roc_auc"] == 1.0
    assert m["n_val"] == 0
    assert "no validation rows" in caplog.text


def test_empty_test_gives_nan_metrics() -> None:
    m = evaluate_scores(frame([(0, 0.2), (1, 0.8)], []))
    assert m["threshold"] == pytest.approx(0.5)
    assert m["n_test"] == 0
    assert all(math.isnan(m[k]) for k in ("roc_auc", "accuracy", "f1", "log_loss", "test_positive_rate"))


def test_bad_scores_are_one_line_errors() -> None:
    with pytest.raises(FidBenchError, match="NaN or infinite"):
        compute_metrics([0, 1], [0.2, float("nan")])
    with pytest.raises(FidBenchError, match=r"labels must be 0 \(real\) or 1"):
        compute_metrics([0, -1], [0.2, 0.3])
    with pytest.raises(FidBenchError, match="probabilities"):
        compute_metrics([0, 1], [0.2, 1.7])
    with pytest.raises(FidBenchError, match="lacks column"):
        evaluate_scores(pd.DataFrame({"label": [0], "score": [0.1]}))
    with pytest.raises(FidBenchError, match="unknown split"):
        evaluate_scores(pd.DataFrame({"label": [0], "score": [0.1], "split": ["train"]}))


def test_aggregate_one_fold_is_unchanged() -> None:
    fold = {"roc_auc": 0.9, "n_test": 10.0}
    assert aggregate_folds([fold]) == fold


def test_aggregate_mean_and_sample_std() -> None:
    folds = [{"roc_auc": 0.8, "f1": 0.5}, {"roc_auc": 0.9, "f1": 0.7}, {"roc_auc": 1.0, "f1": 0.6}]
    m = aggregate_folds(folds)
    assert m["roc_auc"] == pytest.approx(0.9)
    assert m["roc_auc_std"] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert m["f1"] == pytest.approx(0.6)
    assert m["f1_std"] == pytest.approx(0.1)
    assert m["n_folds"] == 3


def test_aggregate_skips_nan_folds_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        m = aggregate_folds([{"roc_auc": 0.8}, {"roc_auc": float("nan")}, {"roc_auc": 1.0}])
    assert m["roc_auc"] == pytest.approx(0.9)
    assert "roc_auc (1 of 3)" in caplog.text
    m = aggregate_folds([{"a": float("nan"), "b": 1.0}, {"a": float("nan"), "b": 3.0}])
    assert np.isnan(m["a"]) and np.isnan(m["a_std"])
    assert m["b"] == 2.0 and m["b_std"] == pytest.approx(np.sqrt(2))
    with pytest.raises(FidBenchError):
        aggregate_folds([])


def test_validation_threshold_chooses_on_val_rows_or_falls_back() -> None:
    from fid_bench.evaluation.metrics import validation_threshold

    scores = pd.DataFrame(
        {
            "label": [0, 1, 0, 1, 1, 0],
            "score": [0.1, 0.9, 0.2, 0.8, 0.05, 0.95],
            "split": ["val", "val", "val", "val", "test", "test"],
        }
    )
    # only the val rows choose: the test rows (which would move it) are not read
    assert validation_threshold(scores) == pytest.approx(
        best_f1_threshold([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])
    )
    no_positive = scores.assign(label=0)
    assert validation_threshold(no_positive) == 0.5
    assert validation_threshold(no_positive, fallback=0.3) == 0.3
    assert math.isnan(validation_threshold(scores[scores["split"] == "test"].head(0), fallback=math.nan))
    # a frame without a split column is all validation rows
    assert validation_threshold(scores.drop(columns="split").head(4)) == validation_threshold(scores)
