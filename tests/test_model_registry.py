"""The MLflow-native path: dataset lineage on every run, the registry flow (promote, then predict from
``models:/NAME@champion``), the experiment's first-visit settings, system metrics off by default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fid_bench.cli import main as cli_main
from fid_bench.tracking.lineage import CONTEXT_TAG, rows_digest
from tests.test_predict import TEST_IDS, _only_run, _predict_and_check, kaggle_folder

MODEL = "fid-detector"


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri() -> Iterator[None]:
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.fixture
def kaggle_run(compose_cfg, isolated: Path):
    """One embedding run on a small Kaggle-style folder; returns (data root, run)."""
    from fid_bench.jobs.experiment import run_job

    root = kaggle_folder(isolated / "gon")
    run_job(
        compose_cfg(
            "data=kaggle", f"data.root={root}", "model=spectrum", "classifier=logreg",
            "features.num_workers=0", "eval.bootstrap=0", tiny=False,
        )
    )  # fmt: skip
    return root, _only_run()


def _inputs(run) -> dict[str, object]:
    return {{t.key: t.value for t in i.tags}[CONTEXT_TAG]: i.dataset for i in run.inputs.dataset_inputs}


# --------------------------------------------------------------------------- lineage


def test_run_logs_train_validation_and_test_with_digest_source_and_rows(kaggle_run) -> None:
    root, run = kaggle_run
    inputs = _inputs(run)
    assert set(inputs) == {"train", "validation", "test"}
    rows = {ctx: json.loads(ds.profile)["num_rows"] for ctx, ds in inputs.items()}
    assert sum(rows.values()) == 48  # every labelled row of train.csv, each in one part
    assert all(n > 0 for n in rows.values())
    assert len({ds.digest for ds in inputs.values()}) == 3
    for ds in inputs.values():
        assert ds.name == "generated-or-not"
        assert json.loads(ds.source)["uri"] == str(root.resolve())
    # the Source column: entry point and commit, set by the harness itself
    assert run.data.tags["mlflow.source.name"] == "python -m fid_bench"


def test_digest_changes_when_one_file_changes_and_not_when_rows_are_reordered(isolated: Path) -> None:
    from fid_bench.data.readers import FolderReader

    root = isolated / "folder"
    for label, value in (("real", 40), ("fake", 200)):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (value + i, value, value)).save(root / label / f"{i}.png")

    def digest() -> str:
        samples = FolderReader(root=root, strict=True, cache_dir=isolated / "cache").read()
        return rows_digest(samples.table)

    before = digest()
    table = FolderReader(root=root, strict=True, cache_dir=isolated / "cache").read().table
    assert rows_digest(table.iloc[::-1]) == before
    assert digest() == before  # reading again: same bytes, same digest
    Image.new("RGB", (8, 8), (0, 0, 0)).save(root / "fake" / "1.png")  # one image edited in place
    assert digest() != before


# --------------------------------------------------------------------------- registry flow


def test_promote_then_predict_from_the_champion_alias_writes_a_kaggle_submission(
    kaggle_run, isolated: Path, capsys
) -> None:
    import mlflow

    root, run = kaggle_run
    capsys.readouterr()
    assert cli_main(["promote", "--run", "best", "--name", MODEL]) == 0
    assert f"as {MODEL} version 1, alias champion: models:/{MODEL}@champion" in capsys.readouterr().out

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    tags = version.tags
    assert float(tags["roc_auc"]) == pytest.approx(run.data.metrics["roc_auc"], rel=1e-5)
    assert float(tags["threshold"]) == pytest.approx(run.data.metrics["threshold"], rel=1e-5)
    assert tags["data_fingerprint"] == run.data.tags["data_fingerprint"]
    assert tags["data_digest.train"] == _inputs(run)["train"].digest
    # the UI's Models column lists registered versions from the logged model's tag
    (output,) = run.outputs.model_outputs
    links = json.loads(client.get_logged_model(output.model_id).tags["mlflow.modelVersions"])
    assert links == [{"name": MODEL, "version": "1"}]

    sub = _predict_and_check(root, isolated / "sub.csv", ["--model", f"models:/{MODEL}@champion"], capsys)
    assert sub["id"].tolist() == TEST_IDS

    # promoting again makes a new version and moves the alias to it
    assert cli_main(["promote", "--run", run.info.run_id, "--name", MODEL]) == 0
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"


def test_promote_and_alias_errors_are_one_line(kaggle_run, capsys) -> None:
    _, run = kaggle_run
    cases = [
        (["promote", "--run", run.info.run_id, "--name", "a/b"], "use letters, digits"),
        (["promote", "--run", run.info.run_id, "--name", MODEL, "--alias", "v3"], "reserved"),
        (["promote", "--run", "0" * 32, "--name", MODEL], "unknown run"),
        (
            ["predict", "--model", f"models:/{MODEL}@champion", "--images", ".", "--out", "x.csv"],
            "not found",
        ),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert cli_main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)


def test_a_study_promotes_its_refit_when_asked(compose_cfg) -> None:
    import mlflow

    from fid_bench.jobs.search.study import run_study

    run_study(
        compose_cfg("hparams_search=logreg", "hparams_search.n_trials=2", f"hparams_search.promote={MODEL}")
    )
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    refit = client.get_run(version.run_id)
    assert refit.data.tags["hparams_search"] == "refit"
    assert set(_inputs(refit)) == {"train", "validation", "test"}
    trials = [
        r
        for r in client.search_runs([refit.info.experiment_id])
        if r.data.tags.get("fid_bench.kind") == "trial"
    ]
    assert trials and all(set(_inputs(t)) == {"train", "validation"} for t in trials)  # never the test rows


def test_bad_promote_key_fails_before_the_study(compose_cfg) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.jobs.search.study import check_search_config

    with pytest.raises(FidBenchError, match="hparams_search.promote"):
        check_search_config(compose_cfg("hparams_search=logreg", "hparams_search.promote='a b'"))


# --------------------------------------------------------------------------- first visit, system metrics


def test_harness_experiments_open_on_a_flat_runs_view_with_headline_columns(compose_cfg) -> None:
    import mlflow

    from fid_bench.tracking.job_run import JobRunSpec, tracked_run
    from fid_bench.tracking.ui import SAVED_VIEW_PREFIX, VIEW_ID, runs_url

    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
        experiment_id = run.experiment_id
    tags = mlflow.MlflowClient().get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    envelope = json.loads(tags[SAVED_VIEW_PREFIX + VIEW_ID])
    assert {"name", "createdAt", "state"} <= set(envelope)
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == "metrics.`roc_auc`" and state["orderByAsc"] is False
    assert {"metrics.`roc_auc`", "metrics.`f1`", "attributes.`Dataset`"} <= set(state["selectedColumns"])
    url = runs_url("http://127.0.0.1:5000", experiment_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_ID}"
    )


def test_make_ui_prints_the_runs_link_of_each_experiment(compose_cfg, isolated: Path, capsys) -> None:
    from fid_bench.commands import ui_command
    from fid_bench.tracking import ui
    from fid_bench.tracking.job_run import JobRunSpec, tracked_run

    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
        experiment_id = run.experiment_id
    assert ui_command.main(["--tracking-uri", f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}"]) == 0
    out = capsys.readouterr().out
    assert f"demo: {ui.runs_url('http://127.0.0.1:5000', experiment_id)}" in out


def test_system_metrics_are_opt_in(compose_cfg, monkeypatch) -> None:
    """Off by default: a run logs no ``system/`` metric. With ``tracking.system_metrics=true`` MLflow's
    monitor really samples this process (sampled fast here) and the run carries CPU and memory."""
    import time

    import mlflow

    from fid_bench.tracking.job_run import JobRunSpec, tracked_run

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    client = mlflow.MlflowClient()

    def logged_now(run_id: str) -> set[str]:
        return {k for k in client.get_run(run_id).data.metrics if k.startswith("system/")}

    def system_metrics(cfg, *, wait: float) -> set[str]:
        with tracked_run(JobRunSpec.of_config(cfg, track="features")) as run:
            # ten sampling intervals at least; on a busy machine the monitor's thread may need more,
            # so wait (up to ``wait`` s) until it has logged once
            time.sleep(2.0)
            deadline = time.monotonic() + wait
            while not logged_now(run.run_id) and time.monotonic() < deadline:
                time.sleep(0.5)
        return logged_now(run.run_id)

    cfg = compose_cfg()
    assert cfg.tracking.system_metrics is False
    assert system_metrics(cfg, wait=0) == set()
    logged = system_metrics(compose_cfg("tracking.system_metrics=true"), wait=60)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= logged, logged


def test_dataset_inputs_are_a_table_per_context() -> None:
    from fid_bench.data.splits import Fold
    from fid_bench.tracking.lineage import fold_parts

    table = pd.DataFrame(
        {
            "id": list("abcdef"),
            "label": [0, 1] * 3,
            "split": ["train"] * 6,
            "group": [""] * 6,
            "sha1": list("uvwxyz"),
        }
    )
    import numpy as np

    one = [Fold(0, np.array([0, 1]), np.array([2, 3]), np.array([4, 5]))]
    assert [p.context for p in fold_parts(table, one, name="d", source="/r", final=True)] == [
        "train", "validation", "test",
    ]  # fmt: skip
    assert [p.context for p in fold_parts(table, one, name="d", source="/r", final=False)] == [
        "train",
        "validation",
    ]
    two = [*one, Fold(1, np.array([4, 5]), np.array([2, 3]), np.array([0, 1]))]
    (cv,) = fold_parts(table, two, name="d", source="/r", final=True)
    assert cv.context == "cross_validation" and len(cv.rows) == 6
