"""MLflow tracking: runs, failures, parent/child multiruns, model logging, store and experiment creation."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from fid_bench.data.samples import SAMPLE_COLUMNS, SKIP_COLUMNS, Samples
from fid_bench.errors import PARTLY_FAILED_EXIT, FidBenchError
from fid_bench.tracking import run_tags
from fid_bench.tracking.job_run import JobRunSpec, tracked_run
from fid_bench.tracking.logged_scores import log_scores
from fid_bench.tracking.logged_values import flatten_config
from fid_bench.tracking.store import ensure_experiment, open_experiment, resolve_tracking_uri
from fid_bench.tracking.sweep_files import PARENT_RUN_FILE
from fid_bench.tracking.sweep_parent import ORPHAN_ERROR, ParentRunCallback
from tests.conftest import CONF_DIR, REPO
from tests.tracking_support import BrightnessPredictor, grey_image, install_store, make_template_store


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template_store(tmp_path_factory.mktemp("mlflow_template"))


@pytest.fixture
def store(isolated: Path, template_db: Path) -> str:
    """A fresh store at the path MLFLOW_TRACKING_URI names (conftest's ``isolated``)."""
    uri = install_store(template_db, isolated)
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
    return uri


@pytest.fixture
def client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


@pytest.fixture(autouse=True)
def no_active_run():
    """A test that fails half-way must not leave an active fluent run to the next one."""
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")


def only_run(client, experiment: str = "demo"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def artifact_text(client, run_id: str, path: str) -> str:
    return Path(client.download_artifacts(run_id, path)).read_text()


# --------------------------------------------------------------------------- one run


def test_run_logs_params_tags_metrics_and_config(compose_cfg, client, isolated):
    cfg = compose_cfg("classifier=rf", "balance=oversample", "seed=7")
    with tracked_run(JobRunSpec.of_config(cfg, track="features")) as run:
        run.log_metrics({"roc_auc": 0.75, "undefined": float("nan"), "skipped": None, "f1": np.float32(0.5)})
        run.log_metrics({"train_loss": 0.3}, step=2)
        run.log_params({"extra": [1, 2]})

    logged = only_run(client)
    assert logged.info.run_id == run.run_id
    assert logged.info.status == "FINISHED" and logged.info.end_time is not None
    assert logged.info.run_name == "job-spectrum-rf-oversample"
    tags = logged.data.tags
    assert (tags["model"], tags["classifier"], tags["balance"], tags["data"]) == (
        "spectrum",
        "rf",
        "oversample",
        "demo",
    )
    assert tags["fid_bench.kind"] == "job"
    assert tags["fid_bench_version"] == "0.1.0"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert tags["git_commit"] == head.stdout.strip()
    assert "classifier=rf" in tags["overrides"] and "seed=7" in tags["overrides"]
    assert "mlflow.parentRunId" not in tags

    params = logged.data.params
    assert params["seed"] == "7"
    assert params["classifier.estimator.n_estimators"] == "300"
    assert params["classifier.estimator.random_state"] == "7"  # interpolations resolved
    assert params["cv.folds"] == "null"
    assert params["balance._target_"] == "fid_bench.balance.Oversample"
    assert params["extra"] == "[1, 2]"
    assert not any(k.startswith("hydra") for k in params)

    metrics = logged.data.metrics
    assert metrics["roc_auc"] == 0.75 and metrics["f1"] == 0.5 and math.isnan(metrics["undefined"])
    assert "skipped" not in metrics
    (loss,) = client.get_metric_history(run.run_id, "train_loss")
    assert loss.step == 2 and loss.value == 0.3

    config = OmegaConf.create(artifact_text(client, run.run_id, "config.yaml"))
    assert config.seed == 7 and config.classifier.name == "rf" and "hydra" not in config

    # a local store keeps its artifacts next to the database: mlruns/artifacts/<experiment>
    exp = client.get_experiment_by_name("demo")
    assert exp.artifact_location == (isolated / "mlruns" / "artifacts" / "demo").as_uri()
    assert (isolated / "mlruns" / "artifacts" / "demo" / run.run_id / "artifacts" / "config.yaml").is_file()


def test_params_are_flattened_truncated_and_logged_in_batches(compose_cfg, client, caplog):
    flat = flatten_config(
        {"a": {"b": {"c": 1}}, "long": "x" * 7000, "none": None, "flag": True, "empty": {}, "hydra": {"x": 1}}
    )
    assert (
        flat["a.b.c"] == "1" and flat["none"] == "null" and flat["flag"] == "true" and flat["empty"] == "{}"
    )
    assert len(flat["long"]) == 6000 and flat["long"].endswith("...")
    assert "hydra.x" not in flat

    cfg = compose_cfg()
    with tracked_run(JobRunSpec.of_config(cfg, track="features")) as run:
        run.log_params({f"p{i:03d}": i for i in range(250)})  # more than one batch of 100
        with caplog.at_level(logging.WARNING):
            run.log_params({"seed": 1, "p000": 0})  # seed conflicts, p000 repeats the same value
    params = only_run(client).data.params
    assert all(params[f"p{i:03d}"] == str(i) for i in range(250))
    assert params["seed"] == "42"  # the first value stays; the conflict is reported, not fatal
    assert "param seed already logged" in caplog.text


def test_group_names_fall_back_to_config_without_hydra(monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=resnet50", "classifier=knn", "balance=class_weight"])
    names = run_tags.group_names(cfg)
    assert names == {"model": "resnet50", "classifier": "knn", "balance": "class_weight", "data": "demo"}
    assert run_tags.hydra_overrides() == ""


def test_git_absent_is_not_an_error(compose_cfg, client, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    run_tags.git_state.cache_clear()
    monkeypatch.setattr(run_tags.subprocess, "run", no_git)
    try:
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")):
            pass
    finally:
        run_tags.git_state.cache_clear()
    tags = only_run(client).data.tags
    assert "git_commit" not in tags and tags["fid_bench_version"] == "0.1.0"


# --------------------------------------------------------------------------- failures


def test_raising_body_marks_run_failed_and_propagates(compose_cfg, client):
    import mlflow

    with pytest.raises(ValueError, match="bad batch"):
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
            run.log_metrics({"partial": 1.0})
            raise ValueError("bad batch\nsecond line of detail")
    assert mlflow.active_run() is None
    logged = only_run(client)
    assert logged.info.status == "FAILED" and logged.info.end_time is not None
    assert logged.data.tags["error"] == "ValueError: bad batch"
    text = artifact_text(client, run.run_id, "traceback.txt")
    assert "Traceback" in text and "second line of detail" in text and "test_tracking.py" in text
    assert logged.data.metrics["partial"] == 1.0  # what was logged before the error stays


def test_keyboard_interrupt_marks_run_killed(compose_cfg, client):
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")):
            raise KeyboardInterrupt
    logged = only_run(client)
    assert logged.info.status == "KILLED" and logged.data.tags["error"] == "KeyboardInterrupt"


def test_fid_bench_error_is_recorded_as_one_line(compose_cfg, client):
    with pytest.raises(FidBenchError):
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")):
            raise FidBenchError("data root /nowhere does not exist (set data.root)")
    assert (
        only_run(client).data.tags["error"]
        == "FidBenchError: data root /nowhere does not exist (set data.root)"
    )


def test_deleted_experiment_is_a_clear_error(compose_cfg, client):
    exp_id = client.create_experiment("demo")
    client.delete_experiment(exp_id)
    with pytest.raises(FidBenchError, match="'demo' is deleted"):
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")):
            pass


# --------------------------------------------------------------------------- samples and scores


def _samples() -> Samples:
    rows = [
        ("a", "/d/a.png", 0, "train", "", "s1"),
        ("b", "/d/b.png", 0, "train", "", "s2"),
        ("c", "/d/c.png", 1, "train", "", "s3"),
        ("d", "/d/d.png", 1, "test", "", "s4"),
        ("e", "/d/e.png", -1, "predict", "", "s5"),
        ("f", "", -1, "predict", "", ""),
    ]
    skipped = pd.DataFrame(
        [
            ("g", "/d/g.png", "train", "truncated"),
            ("h", "/d/h.png", "train", "truncated"),
            ("i", "/d/i.png", "test", "zero-byte"),
        ],
        columns=SKIP_COLUMNS,
    )
    unreadable = pd.DataFrame([("f", "", "predict", "missing_file")], columns=SKIP_COLUMNS)
    return Samples(pd.DataFrame(rows, columns=SAMPLE_COLUMNS), skipped, "tiny", unreadable)


def test_log_samples_counts_skips_and_fingerprint(compose_cfg, client, caplog):
    samples = _samples()
    with caplog.at_level(logging.WARNING):
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
            run.log_samples(samples)
    logged = only_run(client)
    m = logged.data.metrics
    assert (m["n_train_real"], m["n_train_fake"], m["n_test_real"], m["n_test_fake"]) == (2, 1, 0, 1)
    assert m["n_predict_unlabelled"] == 2 and m["n_samples"] == 6
    assert m["n_skipped"] == 3 and m["n_unreadable_predict"] == 1
    # computed independently from the raw rows: sha1 of "id, label, split, sha1" lines, first 12 hex digits
    import hashlib

    lines = "".join(
        f"{rid}\x1f{label}\x1f{split}\x1f{sha}\n"
        for rid, _, label, split, _, sha in [
            ("a", "", 0, "train", "", "s1"),
            ("b", "", 0, "train", "", "s2"),
            ("c", "", 1, "train", "", "s3"),
            ("d", "", 1, "test", "", "s4"),
            ("e", "", -1, "predict", "", "s5"),
            ("f", "", -1, "predict", "", ""),
        ]
    )
    assert logged.data.tags["data_fingerprint"] == hashlib.sha1(lines.encode()).hexdigest()[:12]
    relabelled = _samples()
    relabelled.table.loc[0, "label"] = 1
    assert relabelled.fingerprint() != logged.data.tags["data_fingerprint"]
    skipped = pd.read_csv(client.download_artifacts(run.run_id, "skipped.csv"))
    assert skipped["id"].tolist() == ["g", "h", "i"]
    assert "skipped 3 rows (2 truncated, 1 zero-byte); see skipped.csv" in caplog.text
    assert "unreadable_predict.csv" in {a.path for a in client.list_artifacts(run.run_id)}


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    label = np.tile([0, 1], n // 2)
    score = np.clip(0.3 * label + rng.uniform(0, 0.7, n), 0, 1)
    split = np.where(np.arange(n) < 16, "val", "test")
    return pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(n)],
            "label": label,
            "score": score,
            "split": split,
            "group": "",
            "fold": 0,
        }
    )


def test_log_scores_writes_predictions_and_plots(compose_cfg, client):
    scores = _scores()
    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
        log_scores(run, scores, {"roc_auc": 0.8, "threshold": 0.5})
    back = pd.read_csv(client.download_artifacts(run.run_id, "predictions.csv"), keep_default_na=False)
    pd.testing.assert_frame_equal(back, scores, check_dtype=False)
    plots = {a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert plots == {"plots/roc.png", "plots/pr.png", "plots/reliability.png", "plots/confusion.png"}
    png = Path(client.download_artifacts(run.run_id, "plots/roc.png")).read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "plot_errors" not in only_run(client).data.tags


def test_a_broken_plot_does_not_fail_the_run(compose_cfg, client, monkeypatch):
    from fid_bench.evaluation import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "pr_curve_png", broken)
    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
        log_scores(run, _scores(), {"threshold": 0.5})
    logged = only_run(client)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["plot_errors"] == "pr.png: RuntimeError: no display"
    assert {a.path for a in client.list_artifacts(run.run_id, "plots")} == {
        "plots/roc.png",
        "plots/reliability.png",
        "plots/confusion.png",
    }


# --------------------------------------------------------------------------- the logged model


def test_predictor_logged_as_mlflow_model_and_loaded_back(compose_cfg, client, tmp_path):
    import mlflow.pyfunc

    from fid_bench.tracking.pyfunc import load_predictor

    dark, light = grey_image(tmp_path / "dark.png", 20), grey_image(tmp_path / "light.png", 230)
    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
        model_uri = run.log_predictor(BrightnessPredictor(threshold=0.6, prior=0.3))

    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    out = model.predict(pd.DataFrame({"path": [str(light), str(dark)]}, index=[10, 11]))
    assert list(out.columns) == ["score", "label"] and list(out.index) == [10, 11]
    assert out["score"].to_numpy() == pytest.approx([230 / 255, 20 / 255])
    assert out["label"].tolist() == [1, 0]
    assert model.metadata.get_input_schema().input_names() == ["path"]
    assert model.metadata.metadata["predictor_class"] == "tests.tracking_support.BrightnessPredictor"

    for ref in (run.run_id, model_uri):
        predictor = load_predictor(ref)
        assert isinstance(predictor, BrightnessPredictor)
        assert (predictor.threshold, predictor.prior) == (0.6, 0.3)

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    requirements = (local / "requirements.txt").read_text().split()
    assert "fid_bench==0.1.0" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements

    with pytest.raises(FidBenchError, match="cannot load the model"):
        load_predictor("0" * 32)


def test_model_input_without_path_column_is_a_clear_error():
    from fid_bench.tracking.pyfunc import predict_frame

    with pytest.raises(FidBenchError, match="'path' column"):
        predict_frame(BrightnessPredictor(), pd.DataFrame({"file": ["x.png"]}))


# --------------------------------------------------------------------------- parent and children


@pytest.fixture
def multirun_cfg(compose_cfg, isolated):
    """A job config as a multirun job sees it (HydraConfig in MULTIRUN mode, sweep dir in tmp)."""

    def make(*overrides: str):
        return compose_cfg(
            "hydra.mode=MULTIRUN", f"hydra.sweep.dir={isolated / 'multirun' / 'sweep'}", *overrides
        )

    return make


def _child(cfg, roc_auc: float | None = None, error: Exception | None = None) -> str:
    try:
        with tracked_run(JobRunSpec.of_config(cfg, track="features")) as run:
            if error is not None:
                raise error
            run.log_metrics({"roc_auc": roc_auc, "f1": roc_auc - 0.1})
    except ValueError:
        pass
    return run.run_id


def test_multirun_parent_and_children_through_the_callback(multirun_cfg, client, isolated, capsys):
    cfg = multirun_cfg()
    callback = ParentRunCallback()
    callback.on_multirun_start(cfg)

    info = json.loads((isolated / "multirun" / "sweep" / PARENT_RUN_FILE).read_text())
    parent_id = info["run_id"]
    assert info["tracking_uri"] == os.environ["MLFLOW_TRACKING_URI"]
    assert client.get_run(parent_id).info.status == "RUNNING"

    low = _child(multirun_cfg("classifier=logreg"), 0.6)
    high = _child(multirun_cfg("classifier=rf"), 0.8)
    failed = _child(multirun_cfg("classifier=knn"), error=ValueError("boom"))
    # a worker killed mid-job leaves its run RUNNING
    exp_id = client.get_experiment_by_name("demo").experiment_id
    orphan = client.create_run(
        exp_id, tags={"mlflow.parentRunId": parent_id, "fid_bench.kind": "job"}
    ).info.run_id

    with pytest.raises(SystemExit) as ended:  # the sweep's exit code says some jobs failed
        callback.on_multirun_end(cfg)
    assert ended.value.code == PARTLY_FAILED_EXIT

    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fid_bench.kind"] == "parent"
    assert parent.data.metrics["best_roc_auc"] == 0.8
    assert parent.data.tags["best_run_id"] == high
    assert parent.data.metrics["n_children_finished"] == 2
    assert parent.data.metrics["n_children_failed"] == 2
    for child in (low, high, failed):
        assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(orphan).data.tags["error"] == ORPHAN_ERROR

    captured = capsys.readouterr()
    out = captured.out
    assert "2 finished, 2 failed" in out
    # the failures last, one line each: the job's error, and the worker that never closed its run
    failures = captured.err.strip().splitlines()
    assert failures[0].startswith("2 of 4 jobs failed")
    assert sorted(line.split(": ", 1)[1] for line in failures[1:]) == sorted(
        ["ValueError: boom", ORPHAN_ERROR]
    )
    table = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [line.split()[1] for line in table] == [high[:8], low[:8]]  # best first, failures left out


def test_parent_is_failed_when_every_child_failed(multirun_cfg, client):
    cfg = multirun_cfg()
    callback = ParentRunCallback()
    callback.on_multirun_start(cfg)
    parent_id = callback.parent.run_id
    _child(multirun_cfg(), error=ValueError("boom"))
    with pytest.raises(SystemExit, match=str(PARTLY_FAILED_EXIT)):
        callback.on_multirun_end(cfg)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["n_children_failed"] == 1 and "best_roc_auc" not in parent.data.metrics


def test_interrupted_multirun_closes_parent_as_killed(multirun_cfg, client):
    cfg = multirun_cfg()
    callback = ParentRunCallback()
    callback.on_multirun_start(cfg)
    parent_id = callback.parent.run_id
    try:
        _child(multirun_cfg(), 0.7)
        # what atexit does when Hydra never reaches on_multirun_end
        callback._close_interrupted()
    finally:
        import atexit

        atexit.unregister(callback._close_interrupted)
    assert client.get_run(parent_id).info.status == "KILLED"
    assert callback.parent is None


def test_job_without_parent_file_is_logged_standalone(multirun_cfg, client, caplog):
    with caplog.at_level(logging.WARNING):
        _child(multirun_cfg(), 0.7)
    assert "mlflow.parentRunId" not in only_run(client).data.tags
    assert "no MLflow parent run recorded" in caplog.text


def test_explicit_parent_run_id(compose_cfg, client):
    exp_id = client.create_experiment("demo")
    parent_id = client.create_run(exp_id).info.run_id
    with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features"), parent_run_id=parent_id) as run:
        pass
    assert client.get_run(run.run_id).data.tags["mlflow.parentRunId"] == parent_id


# --------------------------------------------------------------------------- store and experiment


def test_relative_store_paths_resolve_against_the_launch_dir(tmp_path):
    assert (
        resolve_tracking_uri("sqlite:///mlruns/mlflow.db", tmp_path)
        == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    )
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("./store", tmp_path) == (tmp_path / "store").as_uri()
    assert resolve_tracking_uri("http://host:5000", tmp_path) == "http://host:5000"


def test_store_and_experiment_are_created_where_the_uri_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client, exp_id, uri = open_experiment("sqlite:///deep/store/mlflow.db", "fresh", "deep/artifacts")
    assert (tmp_path / "deep" / "store" / "mlflow.db").is_file()
    assert uri == f"sqlite:///{tmp_path}/deep/store/mlflow.db"
    assert (
        client.get_experiment(exp_id).artifact_location
        == (tmp_path / "deep" / "artifacts" / "fresh").as_uri()
    )
    # a second call finds the experiment instead of creating another
    assert open_experiment(uri, "fresh")[1] == exp_id


def test_experiment_created_by_another_job_in_between_is_reused(client):
    """The race: our read says "missing", another job creates it before our create."""
    other_id = client.create_experiment("contested")

    class RacingClient:
        misses = 1  # the first read comes before the other job's commit

        def get_experiment_by_name(self, name):
            if self.misses:
                self.misses -= 1
                return None
            return client.get_experiment_by_name(name)

        def create_experiment(self, name, artifact_location=None, tags=None):
            return client.create_experiment(name, artifact_location, tags)

    assert ensure_experiment(RacingClient(), "contested") == other_id


_RACE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from fid_bench.tracking.store import open_experiment
    start = float(sys.argv[1])
    time.sleep(max(0.0, start - time.time()))  # both processes go at the same moment
    client, exp_id, uri = open_experiment("sqlite:///mlruns/race.db", "race")
    print(exp_id)
    """
)


@pytest.mark.slow
def test_two_processes_create_the_store_and_experiment_at_once(tmp_path):
    import time

    from mlflow.tracking import MlflowClient

    script = tmp_path / "race.py"
    script.write_text(_RACE_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    go = str(time.time() + 8)  # after both interpreters have imported mlflow
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), go],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    ids = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(ids) == 1
    names = [e.name for e in MlflowClient(f"sqlite:///{tmp_path}/mlruns/race.db").search_experiments()]
    assert names.count("race") == 1


# --------------------------------------------------------------------------- a real Hydra multirun

_APP = textwrap.dedent(
    """
    import hydra
    from fid_bench.tracking.job_run import JobRunSpec, tracked_run

    @hydra.main(version_base="1.3", config_path={conf!r}, config_name="config")
    def main(cfg):
        try:
            with tracked_run(JobRunSpec.of_config(cfg, track="features")) as run:
                if cfg.seed == 3:
                    raise ValueError("seed 3 fails")
                run.log_metrics({{"roc_auc": cfg.seed / 10}})
        except ValueError:
            return float("nan")
        return cfg.seed / 10

    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_hydra_multirun_nests_jobs_under_one_parent(isolated, store, client, launcher):
    app = isolated / "app.py"
    app.write_text(_APP.format(conf=str(CONF_DIR)))
    args = [sys.executable, str(app), "-m", "seed=1,2,3", f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        args.append("hydra.launcher.n_jobs=2")
    proc = subprocess.run(
        args,
        cwd=isolated,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # one job failed: the sweep goes on, and its exit code says so, the error on the last lines
    assert proc.returncode == PARTLY_FAILED_EXIT, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith("ValueError: seed 3 fails")
    exp = client.get_experiment_by_name("demo")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fid_bench.kind") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["overrides"] for r in children) == ["seed=1", "seed=2", "seed=3"]
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED", "FINISHED"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_roc_auc"] == 0.2
    assert parent.data.tags["launcher"] == launcher
    assert "1 failed" in proc.stdout and "roc_auc" in proc.stdout


# --------------------------------------------------------------------------- the run factory


def test_start_run_tags_the_kind_names_and_nests_a_created_run(client):
    from fid_bench.tracking.kinds import RunKind
    from fid_bench.tracking.run_factory import start_run

    experiment = open_experiment(os.environ["MLFLOW_TRACKING_URI"], "factory")
    parent = start_run(RunKind.PARENT, experiment, "sweep", {"fid_bench.kind": "job"})
    child = start_run(RunKind.COMPARISON, experiment, "compare-2-runs", {"x": "1"}, parent.run_id)
    logged = client.get_run(child.run_id)
    assert logged.info.run_name == "compare-2-runs" and logged.info.status == "RUNNING"
    assert logged.data.tags["fid_bench.kind"] == "comparison" and logged.data.tags["x"] == "1"
    assert logged.data.tags["mlflow.parentRunId"] == parent.run_id
    # the kind given to the factory wins over a tag that says otherwise
    assert client.get_run(parent.run_id).data.tags["fid_bench.kind"] == "parent"


def test_a_store_that_refuses_a_run_is_one_line(client):
    from fid_bench.tracking.kinds import RunKind
    from fid_bench.tracking.run_factory import start_run
    from fid_bench.tracking.store import OpenExperiment

    gone = OpenExperiment(client, "123456", os.environ["MLFLOW_TRACKING_URI"])  # no such experiment
    for active in (False, True):
        with pytest.raises(FidBenchError, match="cannot start an MLflow run in sqlite:///") as err:
            start_run(RunKind.JOB, gone, "job-x", {}, active=active)
        assert "\n" not in str(err.value)
