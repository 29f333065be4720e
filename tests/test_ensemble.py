"""Ensembles: combination rules on hand-made scores, validation-only fitting, and two real runs on
a CIFAKE subset combined, with a predictor that reproduces the ensemble's test scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fid_bench.contract import Predictor
from fid_bench.ensemble_scores import Combiner, EnsemblePredictor, ensemble_scores, member_matrix
from fid_bench.errors import FidBenchError


def _frame(rows: list[tuple[str, int, float, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["id", "label", "score", "split"])
    df["group"] = ""
    df["fold"] = 0
    df["sha1"] = "h-" + df["id"]  # each image's content hash (the same images in every member)
    return df


def test_mean_and_rank_on_hand_made_scores() -> None:
    a = _frame([("v1", 0, 0.1, "val"), ("v2", 1, 0.9, "val"), ("t1", 0, 0.2, "test"), ("t2", 1, 0.6, "test")])
    b = _frame(
        [("v2", 1, 0.3, "val"), ("v1", 0, 0.2, "val"), ("t2", 1, 0.25, "test"), ("t1", 0, 0.2, "test")]
    )
    mean, _ = ensemble_scores({"a": a, "b": b}, "mean")
    got = mean.set_index(["split", "id"])["score"]
    assert got[("test", "t1")] == pytest.approx(0.2)
    assert got[("test", "t2")] == pytest.approx((0.6 + 0.25) / 2)
    rank, _ = ensemble_scores({"a": a, "b": b}, "rank")
    got = rank.set_index(["split", "id"])["score"]
    # a's validation scores {0.1, 0.9}: 0.2 sits above one of two -> 0.5; 0.6 -> 0.5
    # b's {0.2, 0.3}: 0.2 ties the lower (mid-rank 0.5 of 1 -> 0.25); 0.25 above one -> 0.5
    assert got[("test", "t1")] == pytest.approx((0.5 + 0.25) / 2)
    assert got[("test", "t2")] == pytest.approx((0.5 + 0.5) / 2)


def test_stack_never_sees_test_labels() -> None:
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    split = np.where(np.arange(n) < 100, "val", "test")
    a = np.clip(0.5 * y + rng.uniform(0, 0.5, n), 0, 1)
    b = rng.uniform(0, 1, n)  # noise: the combiner should learn to ignore it
    frames = {
        name: _frame([(str(i), int(y[i]), float(s[i]), str(split[i])) for i in range(n)])
        for name, s in (("a", a), ("b", b))
    }
    scores, combiner = ensemble_scores(frames, "stack")
    weights = combiner.describe()
    assert weights["weight_0"] > 5 * abs(weights["weight_1"])
    # flipping every test label changes nothing: the combiner was fitted on validation rows
    flipped = {
        k: f.assign(label=np.where(f["split"] == "test", 1 - f["label"], f["label"]))
        for k, f in frames.items()
    }
    again, _ = ensemble_scores(flipped, "stack")
    test = scores["split"] == "test"
    np.testing.assert_allclose(again.loc[test, "score"], scores.loc[test, "score"])


def test_members_on_different_test_rows_are_refused() -> None:
    a = _frame([("v", 0, 0.1, "val"), ("t1", 0, 0.2, "test")])
    b = _frame([("v", 0, 0.1, "val"), ("t2", 0, 0.2, "test")])
    with pytest.raises(FidBenchError, match="not scored on the same test rows"):
        member_matrix({"a": a, "b": b})
    c = _frame([("v", 0, 0.1, "val"), ("t1", 1, 0.2, "test")])
    with pytest.raises(FidBenchError, match="disagree on the label"):
        member_matrix({"a": a, "c": c})
    with pytest.raises(FidBenchError, match="at least two"):
        member_matrix({"a": a})
    with pytest.raises(FidBenchError, match="method must be one of"):
        Combiner("median")


def test_stack_needs_both_classes_in_validation() -> None:
    with pytest.raises(FidBenchError, match="both classes"):
        Combiner("stack").fit(np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0, 0]))


class _Fixed(Predictor):
    def __init__(self, table: dict[str, float], prior: float) -> None:
        self.table = table
        self.prior = prior

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        return np.array([self.table.get(p, self.prior) for p in paths])


def test_predictor_runs_its_members_and_combines() -> None:
    a = _Fixed({"x": 0.8, "y": 0.2}, prior=0.4)
    b = _Fixed({"x": 0.6, "y": 0.4}, prior=0.2)
    pred = EnsemblePredictor([a, b], Combiner("mean"), names=["a", "b"], threshold=0.55)
    np.testing.assert_allclose(pred.predict_paths(["x", "y", "unreadable"]), [0.7, 0.3, 0.3])
    assert pred.prior == pytest.approx(0.3)
    import pickle

    assert pickle.loads(pickle.dumps(pred)).predict_paths(["x"])[0] == pytest.approx(0.7)


def test_two_real_runs_on_cifake(compose_cfg, cifake_small) -> None:
    from mlflow import MlflowClient

    from fid_bench.evaluation.metrics import evaluate_scores
    from fid_bench.jobs.experiment import run_job
    from fid_bench.tracking.pyfunc import load_predictor

    frames, predictors, aucs = {}, [], {}
    client = MlflowClient()
    for classifier in ("logreg", "knn"):
        cfg = compose_cfg("data=folder", f"data.root={cifake_small}", f"classifier={classifier}", tiny=False)
        aucs[classifier] = run_job(cfg)
        experiments = [e.experiment_id for e in client.search_experiments()]
        (run,) = client.search_runs(experiments, filter_string=f"tags.classifier = '{classifier}'")
        frames[classifier] = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))
        predictors.append(load_predictor(run.info.run_id))
    # every run stores its validation scores next to its test scores
    for frame in frames.values():
        assert set(frame["split"]) == {"val", "test"} and (frame["split"] == "val").sum() == 80
    for method in ("mean", "rank", "stack"):
        scores, combiner = ensemble_scores(frames, method)
        m = evaluate_scores(scores)
        assert m["roc_auc"] > 0.8, method
        assert m["roc_auc"] >= min(aucs.values()) - 0.02, method
        test = scores[scores["split"] == "test"]
        pred = EnsemblePredictor(predictors, combiner, names=list(frames), threshold=m["threshold"])
        paths = [str(cifake_small / i) for i in test["id"]]
        np.testing.assert_allclose(pred.predict_paths(paths), test["score"].to_numpy(), atol=1e-6)


def test_ensemble_settings_are_the_members_and_a_difference_is_said(caplog) -> None:
    from types import SimpleNamespace

    from fid_bench.jobs.ensemble import member_settings

    def run(run_id: str, **params: str):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(params=params))

    same = member_settings(
        [
            run("a", **{"eval.bootstrap": "200", "seed": "3"}),
            run("b", **{"eval.bootstrap": "200", "seed": "3"}),
        ]
    )
    assert (same.bootstrap, same.seed) == (200, 3) and not caplog.records
    first = member_settings(
        [
            run("a", **{"eval.bootstrap": "200", "seed": "3"}),
            run("b", **{"eval.bootstrap": "50", "seed": "3"}),
        ]
    )
    assert (first.bootstrap, first.seed) == (200, 3)
    assert "different bootstrap; the ensemble uses those of run a" in caplog.text


def test_stack_validation_scores_are_cross_fitted_not_in_sample() -> None:
    """Members whose validation scores are noise: a combiner scored on the rows it was fitted on looks
    better than chance there (mean validation ROC-AUC about 0.60 over these 30 draws); scored out of
    fold, it does not (about 0.47). The threshold is chosen on these scores, so in-sample ones would
    choose it on the rows the combiner learned."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = 40
        labels = [0, 1] * (n // 2) + [0, 1] * 5
        split = ["val"] * n + ["test"] * 10
        frames = {
            m: _frame(
                [
                    (f"r{i}", labels[i], float(s), split[i])
                    for i, s in enumerate(rng.uniform(0.05, 0.95, n + 10))
                ]
            )
            for m in ("a", "b")
        }
        scores, _ = ensemble_scores(frames, "stack")
        val = scores[scores["split"] == "val"]
        aucs.append(roc_auc_score(val["label"], val["score"]))
    assert np.mean(aucs) < 0.53, np.mean(aucs)
