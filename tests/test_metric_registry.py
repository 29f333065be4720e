"""The metric registry: the direction of every name the harness logs, the lists read from it, and proof
that every command that ranks runs (leaderboard, compare, predict --run best, the multirun summary)
and the search's default direction take the direction from the metric_registry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from fid_bench import cli
from fid_bench.evaluation import metric_registry
from fid_bench.evaluation.metric_registry import Metric, direction, lookup
from fid_bench.evaluation.metrics import compute_metrics, evaluate_scores
from tests.tracking_support import BrightnessPredictor, grey_image


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("roc_auc", "maximize"),
        ("log_loss", "minimize"),
        ("shoes/roc_auc", "maximize"),
        ("jpeg75/log_loss", "minimize"),
        ("logo/sd14/log_loss", "minimize"),
        ("group/sd14/average_precision", "maximize"),
        ("val_roc_auc", "maximize"),
        ("val_loss", "minimize"),
        ("train_loss", "minimize"),
        ("best_log_loss", "minimize"),
        ("best_roc_auc", "maximize"),
        # interval bounds follow the metric: a higher lower bound of AUC, a lower upper bound of a loss
        ("roc_auc_ci_low", "maximize"),
        ("roc_auc_ci_high", "maximize"),
        ("f1_ci_low", "maximize"),
        ("log_loss_ci_high", "minimize"),
        # the spread over folds is better small, whatever the metric
        ("roc_auc_std", "minimize"),
        ("log_loss_std", "minimize"),
        ("shoes/roc_auc_std", "minimize"),
        ("audit/n_warnings", "minimize"),
        # unregistered: losses minimise, anything else keeps the old largest-first order
        ("focal_loss", "minimize"),
        ("n_children_finished", "maximize"),
        ("something_else", "maximize"),
    ],
)
def test_direction_of_logged_names(name: str, expected: str) -> None:
    assert direction(name) == expected
    assert metric_registry.lower_is_better(name) is (expected == "minimize")


def test_lookup_finds_the_registered_metric_behind_a_logged_name() -> None:
    assert lookup("logo/sd14/val_roc_auc_ci_low").name == "roc_auc"
    assert lookup("test_positive_rate").name == "test_positive_rate"  # registered itself, not "positive_rate"
    assert lookup("val_") is None and lookup("_std") is None and lookup("nope") is None
    # counts and the threshold are not scores; ranked largest first like any number
    assert metric_registry.METRICS["n_test"].higher_is_better is None and direction("n_test") == "maximize"


def test_metric_lists_are_what_evaluation_computes() -> None:
    """The registry's lists are the keys the metric functions produce (so reading them is not a guess)."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    s = rng.uniform(size=40)
    computed = compute_metrics(y, s, 0.5)
    sources = {metric_registry.CURVE, metric_registry.AT_THRESHOLD, metric_registry.COUNTS}
    assert set(computed) == {m.name for m in metric_registry.METRICS.values() if m.source in sources}
    frame = pd.DataFrame({"label": np.r_[y, y], "score": np.r_[s, s], "split": ["val"] * 40 + ["test"] * 40})
    assert set(evaluate_scores(frame)) <= set(metric_registry.METRICS)
    assert set(metric_registry.names(per_prefix=True)) <= set(computed)
    assert metric_registry.headline() == ("roc_auc", "f1", "average_precision", "loso/worst_roc_auc")
    assert metric_registry.names(tabulated=True)[0] == "roc_auc" and "threshold" in metric_registry.names(
        tabulated=True
    )


# --------------------------------------------------------------------------- every command reads it

#: a metric no rule knows: only the registry can say that smaller is better
ODD = "zz_score"


@pytest.fixture
def odd_metric(monkeypatch: pytest.MonkeyPatch) -> str:
    assert direction(ODD) == "maximize"  # without the registry entry it would rank largest first
    monkeypatch.setitem(metric_registry.METRICS, ODD, Metric(ODD, False, metric_registry.EXTERNAL))
    assert direction(ODD) == "minimize"
    return ODD


@pytest.fixture
def ranked_runs(isolated: Path) -> dict[str, str]:
    """A parent run with three finished jobs logging ``zz_score`` 0.3, 0.1, 0.2 (and predictions.csv)."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.create_experiment("demo", artifact_location=(isolated / "mlruns" / "artifacts").as_uri())
    parent = client.create_run(exp, run_name="sweep", tags={"fid_bench.kind": "parent"}).info.run_id
    rng = np.random.default_rng(0)
    ids = {"parent": parent, "experiment_id": exp}
    for name, value in (("high", 0.3), ("low", 0.1), ("mid", 0.2)):
        tags = {
            "fid_bench.kind": "job",
            "model": "spectrum",
            "classifier": name,
            "mlflow.parentRunId": parent,
        }
        run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
        client.log_metric(run_id, ODD, value)
        client.log_metric(run_id, "roc_auc", 0.5 + value)
        label = np.arange(20) % 2
        scores = pd.DataFrame(
            {"id": [f"i{i}" for i in range(40)], "label": np.r_[label, label], "score": rng.uniform(size=40)}
        ).assign(split=["val"] * 20 + ["test"] * 20)
        scores["sha1"] = "h-" + scores["id"]  # the same images in every run
        path = isolated / "pred" / run_id / "predictions.csv"
        path.parent.mkdir(parents=True)
        scores.to_csv(path, index=False)
        client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")
        ids[name] = run_id
    client.set_terminated(parent, "FINISHED")
    return ids


def test_every_command_ranks_by_the_registry(
    odd_metric: str, ranked_runs: dict[str, str], isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from fid_bench.commands import predict_command
    from fid_bench.tracking.sweep_parent import ParentRun, finish_parent_run

    low, mid, high = ranked_runs["low"], ranked_runs["mid"], ranked_runs["high"]

    # leaderboard: smallest first without --ascending
    assert cli.main(["leaderboard", "-e", "demo", "-m", odd_metric, "-f", "csv"]) == 0
    board = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert board["run_id"].tolist() == [low, mid, high]

    # compare --top: the smallest
    assert cli.main(["compare", "--top", "2", "--metric", odd_metric, "--out", "c.png", "--no-log"]) == 0
    capsys.readouterr()
    assert pd.read_csv(isolated / "c.csv")["run_id"].tolist() == [low, mid]

    # predict --run best: the smallest (the model loading itself is not what is tested here)
    loaded: list[str] = []

    def fake_load(
        model_uri: str, locations: list[str], client: object, uri: str, *, allow_external: bool
    ) -> BrightnessPredictor:
        loaded.append(model_uri)
        return BrightnessPredictor()

    monkeypatch.setattr(predict_command, "load_checked_predictor", fake_load)
    (isolated / "imgs").mkdir()
    grey_image(isolated / "imgs" / "a.png", 200)
    argv = ["predict", "--run", "best", "--metric", odd_metric, "--images", "imgs", "--out", "p.csv"]
    assert cli.main([*argv, "--no-progress"]) == 0
    assert loaded == [f"runs:/{low}/model"]
    assert f"runs:/{low}/model" in capsys.readouterr().out

    # the multirun summary: its best child, when the sweeper declares no direction
    import mlflow

    parent = ParentRun(
        ranked_runs["parent"], ranked_runs["experiment_id"], mlflow.get_tracking_uri(), isolated
    )
    summary = finish_parent_run(OmegaConf.create({"optimized_metric": odd_metric}), parent)
    assert summary["best_run_id"] == low and summary[f"best_{odd_metric}"] == pytest.approx(0.1)
    # ... and an explicit sweeper direction still wins
    explicit = OmegaConf.create(
        {"optimized_metric": odd_metric, "hydra": {"sweeper": {"direction": "maximize"}}}
    )
    assert finish_parent_run(explicit, parent)["best_run_id"] == high


def test_search_direction_defaults_to_the_registry(odd_metric: str, compose_cfg) -> None:
    import optuna

    from fid_bench.jobs.search.study import check_search_config, objective_direction, open_study

    for metric, expected in ((odd_metric, "minimize"), ("log_loss", "minimize"), ("roc_auc", "maximize")):
        cfg = compose_cfg("model=spectrum", "hparams_search=logreg", f"optimized_metric={metric}")
        assert cfg.hparams_search.direction is None  # the shipped default
        assert objective_direction(check_search_config(cfg)) == expected
        study, created = open_study(cfg, optuna.storages.InMemoryStorage(), f"s-{metric}")
        assert created and study.direction.name.lower() == expected
    # an explicit value is kept, even against the metric's own direction
    cfg = compose_cfg(
        "model=spectrum",
        "hparams_search=logreg",
        "optimized_metric=log_loss",
        "hparams_search.direction=maximize",
    )
    assert objective_direction(check_search_config(cfg)) == "maximize"


def test_every_metric_flagged_for_an_interval_or_a_paired_test_has_its_function() -> None:
    """``interval`` / ``paired`` in the registry are resampled with ``metrics.SCORE_FUNCTIONS[name]``,
    which ``compute_metrics`` also reports."""
    from fid_bench.evaluation.metrics import SCORE_FUNCTIONS, compute_metrics

    flagged = set(metric_registry.names(interval=True)) | set(metric_registry.names(paired=True))
    assert flagged <= set(SCORE_FUNCTIONS)
    assert set(SCORE_FUNCTIONS) <= set(metric_registry.METRICS)
    assert set(SCORE_FUNCTIONS) <= set(compute_metrics([0, 1, 0, 1], [0.2, 0.7, 0.4, 0.9], warn=False))
