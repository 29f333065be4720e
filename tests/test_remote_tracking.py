"""Against a real ``mlflow server`` on 127.0.0.1 (SQLite back end, proxied artifacts in a temporary
folder): a small sweep logs to it over HTTP, then the leaderboard, ``compare`` and ``predict`` read it
back through the same URI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, TINY

SERVER_START_TIMEOUT = 180  # s; the first start migrates a fresh database (slow on a busy machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A tracking server of its own; always stopped (its whole process group) at teardown."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    folder = tmp_path / "server"
    folder.mkdir()
    log_file = open(folder / "server.log", "wb")  # closed in the finally below
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # no background job runner (a job runner plus several queue consumers): tracking needs none of it
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'm.db'}",
            "--artifacts-destination",
            str(folder / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers it forks are stopped with it
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _healthy(url):
            if proc.poll() is not None:
                log = (folder / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {SERVER_START_TIMEOUT} s")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log_file.close()


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri() -> Iterator[None]:
    """Loading a model sets MLflow's process-wide URI: never leak the server into other tests."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_sweep_over_http_read_back_by_leaderboard_compare_and_predict(
    mlflow_server: str, isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=mlflow_server)
    sweep = subprocess.run(
        [sys.executable, "-m", "fid_bench", "-m", *TINY, "model=spectrum", "classifier=logreg,knn"],
        cwd=isolated,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    # nothing was written to the local store (conftest's empty copy): every run went over HTTP
    import mlflow

    local = mlflow.MlflowClient(tracking_uri=f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    assert local.search_runs([e.experiment_id for e in local.search_experiments()]) == []

    # leaderboard over HTTP: both jobs, ranked by roc_auc
    from fid_bench.tracking.leaderboard import Query, leaderboard
    from fid_bench.tracking.run_queries import open_store

    client = open_store(mlflow_server)
    (board,) = leaderboard(client, Query(experiment="demo", metric="roc_auc"))
    assert sorted(board.runs["classifier"]) == ["knn", "logreg"]
    aucs = [m["roc_auc"] for m in board.runs["metrics"]]
    assert aucs == sorted(aucs, reverse=True)
    best_id = board.runs["run_id"][0]
    best = client.get_run(best_id)
    # the server stores and serves the artifacts itself
    assert best.info.artifact_uri.startswith("mlflow-artifacts:")

    # compare: curves from each run's predictions.csv, logged to the sweep's parent over HTTP
    from fid_bench.commands.compare_command import main as compare_main

    ids = list(board.runs["run_id"])
    assert compare_main([*ids, "--out", str(isolated / "cmp.png")]) == 0
    parent = best.data.tags["mlflow.parentRunId"]
    logged = {a.path for a in client.list_artifacts(parent, "comparison")}
    assert "comparison/cmp.png" in logged and "comparison/cmp.csv" in logged
    table = pd.read_csv(isolated / "cmp.csv")
    assert table["run_id"].tolist() == ids

    # predict --run best (no --experiment: "demo" is the only experiment with runs) on the demo's
    # unlabelled test.csv rows, in a Kaggle-style submission
    from fid_bench.commands.predict_command import main as predict_main

    demo_root = isolated / "cache" / "demo_data"
    out = isolated / "submission.csv"
    capsys.readouterr()
    argv = ["--run", "best", "--data", "kaggle", "--root", str(demo_root), "--out", str(out), "--no-progress"]
    assert predict_main(argv) == 0
    printed = capsys.readouterr().out
    assert f"runs:/{best_id}/model" in printed
    test_ids = pd.read_csv(demo_root / "test.csv", dtype=str, keep_default_na=False)["id"].tolist()
    sub = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
    assert sub["id"].tolist() == test_ids and len(test_ids) > 0
    assert sub["target"].between(0, 1).all()

    # the same scores as the model loaded straight from the server
    from fid_bench.data.readers import KaggleReader
    from fid_bench.tracking.pyfunc import load_predictor

    predictor = load_predictor(best_id, tracking_uri=mlflow_server)
    table = KaggleReader(demo_root).read().table
    paths = table[table["split"] == "predict"]["path"].tolist()
    assert sub["target"].tolist() == pytest.approx(predictor.predict_paths(paths).tolist(), abs=1e-6)
