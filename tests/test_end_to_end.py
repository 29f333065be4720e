"""A whole job and whole sweeps, through the real config, data, cache, classifiers and MLflow."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fid_bench.errors import PARTLY_FAILED_EXIT
from tests.conftest import REPO, TINY


def _runs(experiment: str | None = None):
    import mlflow

    client = mlflow.MlflowClient()
    exps = client.search_experiments()
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
    return client.search_runs([e.experiment_id for e in exps], max_results=1000)


def _children(runs, parent_id: str):
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


def _fid_bench(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "fid_bench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
        )
    return proc


def test_single_job_logs_metrics_artifacts_and_model(compose_cfg, isolated):
    import mlflow

    from fid_bench.jobs.experiment import run_job

    cfg = compose_cfg("model=spectrum", "classifier=logreg")
    value = run_job(cfg)
    assert 0.0 <= value <= 1.0

    (run,) = _runs()
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["roc_auc"] == pytest.approx(value)
    for key in (
        "average_precision",
        "f1",
        "f1_at_threshold",
        "threshold",
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "log_loss",
        "cache_hit_ratio",
    ):
        assert key in m, key
    assert run.data.tags["model"] == "spectrum" and run.data.tags["classifier"] == "logreg"
    assert run.data.params["balance._target_"].endswith("NoBalance")
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    # MLflow 3 keeps the model as a LoggedModel beside the run; `runs:/<id>/model` still resolves it
    assert "predictions.csv" in files
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert len(plots) >= 3

    # the logged model predicts new images
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    demo_imgs = (
        sorted(Path(cfg.data.root).rglob("*.png"))[:3] or sorted(Path(cfg.data.root).rglob("*.jp*g"))[:3]
    )
    import pandas as pd

    out = model.predict(pd.DataFrame({"path": [str(p) for p in demo_imgs]}))
    assert len(out) == 3 and ((out["score"] >= 0) & (out["score"] <= 1)).all()


def test_rerun_hits_the_cache(compose_cfg):
    from fid_bench.jobs.experiment import run_job

    run_job(compose_cfg("classifier=logreg"))
    run_job(compose_cfg("classifier=rf"))
    runs = sorted(_runs(), key=lambda r: r.info.start_time)
    assert runs[0].data.metrics["cache_hit_ratio"] == 0.0
    assert runs[1].data.metrics["cache_hit_ratio"] == 1.0


def test_cross_validation_reports_mean_and_std(compose_cfg):
    from fid_bench.jobs.experiment import run_job

    run_job(compose_cfg("classifier=logreg", "cv.folds=3"))
    (run,) = _runs()
    assert "roc_auc_std" in run.data.metrics and run.data.metrics["n_folds"] == 3


@pytest.mark.slow
def test_multirun_grid_logs_children_under_one_parent(isolated):
    proc = _fid_bench(
        "-m", *TINY, "model=spectrum", "classifier=logreg,lightgbm", "balance=none,oversample", cwd=isolated
    )
    runs = _runs("demo")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = _children(runs, parents[0].info.run_id)
    assert len(children) == 4
    assert all(
        c.info.status == "FINISHED" and "roc_auc" in c.data.metrics and "f1" in c.data.metrics
        for c in children
    )
    assert "roc_auc" in proc.stdout  # the leaderboard printed at the end
    import mlflow

    figure = {a.path for a in mlflow.MlflowClient().list_artifacts(parents[0].info.run_id, "comparison")}
    assert any(p.endswith(".png") for p in figure)  # the top children's curves, overlaid

    # a second identical sweep extracts nothing
    proc = _fid_bench(
        "-m", *TINY, "model=spectrum", "classifier=logreg", "balance=none,oversample", cwd=isolated
    )
    newest = sorted(_runs("demo"), key=lambda r: r.info.start_time)[-2:]
    assert all(r.data.metrics["cache_hit_ratio"] == 1.0 for r in newest)


@pytest.mark.slow
def test_failing_job_is_marked_failed_and_sweep_continues(isolated):
    # small_cnn has no frozen encoder: with a feature classifier that job must fail alone
    proc = _fid_bench("-m", *TINY, "model=spectrum,small_cnn", "classifier=logreg", cwd=isolated, check=False)
    assert proc.returncode == PARTLY_FAILED_EXIT, proc.stderr[-3000:]  # the sweep went on, and says so
    runs = _runs("demo")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    statuses = sorted(r.info.status for r in children)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "encoder" in failed.data.tags.get("error", "")


def test_real_multirun_one_job_failing_in_the_default_suite(isolated):
    """``python -m fid_bench -m`` for real: two tiny jobs, the small_cnn one raises (no frozen encoder)."""
    import mlflow

    tiny = ["data.reader.n_real=24", "data.reader.n_fake=12", "data.reader.size=32", "eval.bootstrap=0"]
    tiny += ["features.num_workers=0", "features.batch_size=32"]
    proc = _fid_bench("-m", *tiny, "model=spectrum,small_cnn", "classifier=logreg", cwd=isolated, check=False)
    assert proc.returncode == PARTLY_FAILED_EXIT, proc.stderr[-3000:]
    # the failed job's one-line error closes the output
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("  ") and "model=small_cnn" in last and "encoder" in last, last
    runs = _runs("demo")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = _children(runs, parents[0].info.run_id)
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    assert len(runs) == 3
    ok = next(c for c in children if c.info.status == "FINISHED")
    failed = next(c for c in children if c.info.status == "FAILED")
    assert ok.data.tags["model"] == "spectrum" and "roc_auc" in ok.data.metrics
    assert "encoder" in failed.data.tags.get("error", "")
    comparison = {a.path for a in mlflow.MlflowClient().list_artifacts(parents[0].info.run_id, "comparison")}
    assert any(p.endswith(".png") for p in comparison), comparison
    assert "roc_auc" in proc.stdout  # the sweep's leaderboard
    # with the ~top column of fid-bench leaderboard: the one finished child is the top
    header = next(line for line in proc.stdout.splitlines() if line.startswith("#  run"))
    assert header.split()[header.split().index("roc_auc") + 1 :].count("~top") == 1, proc.stdout
    assert "(DeLong, Holm-adjusted, alpha 0.05, 1 run on the same" in proc.stdout, proc.stdout


def test_demo_grid_experiment_composes_the_make_run_grid(compose_cfg):
    """``make run`` is ``python -m fid_bench experiment=demo_grid``: check what that preset selects."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg("experiment=demo_grid", tiny=False)
    choices = HydraConfig.get().runtime.choices
    assert choices["data"] == "demo" and choices["model"] == "spectrum"
    assert cfg.task_name == "demo_grid"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = dict(cfg.hydra.sweeper.params)
    assert params == {"classifier": "logreg,rf,lightgbm", "balance": "none,class_weight"}
    assert cfg.model.backbone._target_.endswith("SpectrumEncoder")


def test_bad_config_value_is_one_line_error(isolated):
    proc = _fid_bench(*TINY, "data.val_fraction=1.5", cwd=isolated, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "val_fraction" in err_lines[0]


def _kaggle_folder(root: Path, n: int = 40) -> Path:
    """A generated-or-not-style folder: ids without extension, a truncated and a zero-byte image."""
    import numpy as np

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows, test_rows = [], []
    for i in range(n):
        label = i % 2
        arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        if label:  # a crude fingerprint: 2x nearest-neighbour up-sampling
            arr = np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1)
        Image.fromarray(arr).save(root / "images" / f"img{i}.png")
        rows.append(f"img{i},{label}")  # id without its extension
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "images" / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "images" / "empty.png").write_bytes(b"")
    rows += ["trunc,1", "empty,0"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "images" / f"t{i}.png")
        test_rows.append(f"t{i}")
    (root / "train.csv").write_text("id,target\n" + "\n".join(rows) + "\n")
    (root / "test.csv").write_text("id\n" + "\n".join(test_rows) + "\n")
    return root


def test_kaggle_layout_with_broken_files_skips_and_lists_them(compose_cfg, isolated):
    import mlflow

    from fid_bench.jobs.experiment import run_job

    root = _kaggle_folder(isolated / "gon")
    cfg = compose_cfg(
        "data=kaggle",
        f"data.root={root}",
        "model=spectrum",
        "classifier=logreg",
        "features.num_workers=0",
        tiny=False,
    )
    value = run_job(cfg)
    assert not math.isnan(value)
    (run,) = _runs("generated-or-not")
    assert run.info.status == "FINISHED" and run.data.metrics["n_skipped"] == 2
    path = mlflow.MlflowClient().download_artifacts(run.info.run_id, "skipped.csv", str(isolated / "dl"))
    skipped = Path(path).read_text()
    assert "trunc" in skipped and "empty" in skipped


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_at_once_sharing_cache_and_store(isolated):
    _fid_bench(
        "-m",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=spectrum",
        "classifier=logreg,knn",
        cwd=isolated,
    )
    runs = _runs("demo")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1


def test_only_rank_zero_of_a_distributed_job_logs(compose_cfg, monkeypatch):
    from fid_bench.jobs.experiment import run_job

    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's DDP launcher sets in its second process
    value = run_job(compose_cfg("classifier=logreg", "eval.bootstrap=0"))
    assert 0.0 <= value <= 1.0
    assert _runs() == []
    monkeypatch.setenv("LOCAL_RANK", "0")
    run_job(compose_cfg("classifier=logreg", "eval.bootstrap=0"))
    assert len(_runs()) == 1
