"""What a new user meets first: entry points without their dependencies, short run ids, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

BLOCK_HYDRA = "import sys, runpy; sys.modules['hydra'] = None; sys.argv = ['x']; runpy.run_module({!r}, run_name='__main__')"


@pytest.mark.parametrize(
    ("module", "entry"), [("fid_bench", "python -m fid_bench"), ("fid_bench.cli", "fid-bench")]
)
def test_missing_dependency_is_one_line_naming_make_install(module: str, entry: str, tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_HYDRA.format(module)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert entry in lines[0] and "hydra-core" in lines[0] and "make install" in lines[0]
    assert "Traceback" not in done.stderr


def test_missing_lists_only_what_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from fid_bench import installed

    monkeypatch.setattr(installed, "REQUIRED", (("numpy", "numpy"), ("no_such_module_xyz", "no-such-dist")))
    assert installed.missing() == ["no-such-dist"]
    with pytest.raises(SystemExit, match="no-such-dist.*make install"):
        installed.require("fid-bench")


def _store_with_runs(isolated, ids: list[str]):
    """Runs with the given ids (rewritten in the SQLite store: MLflow chooses ids itself)."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    exp = client.create_experiment("ids")
    made = [client.create_run(exp, run_name=f"r{i}").info.run_id for i in range(len(ids))]
    with sqlite3.connect(isolated / "mlruns" / "mlflow.db") as db:
        for old, new in zip(made, ids, strict=True):
            for table in ("runs",):
                db.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (new, old))
            for table in ("tags", "params", "metrics", "latest_metrics"):
                db.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (new, old))
    return client


def test_run_id_prefixes_resolve_and_ambiguity_lists_the_candidates(isolated) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.tracking.run_queries import get_run

    a, b, c = "abcdef01" + "0" * 24, "abcdef02" + "0" * 24, "123456ab" + "1" * 24
    client = _store_with_runs(isolated, [a, b, c])
    assert get_run(client, a).info.run_id == a
    assert get_run(client, "abcdef01").info.run_id == a
    assert get_run(client, "ABCDEF02").info.run_id == b  # as typed from a screen
    assert get_run(client, "123456").info.run_id == c
    with pytest.raises(FidBenchError, match="ambiguous") as err:
        get_run(client, "abcdef0")
    assert a in str(err.value) and b in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FidBenchError, match="too short"):
        get_run(client, "abcde")
    with pytest.raises(FidBenchError, match="unknown run"):
        get_run(client, "fedcba98")
    with pytest.raises(FidBenchError, match="unknown run"):
        get_run(client, "not-a-run")


def _app(isolated, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "fid_bench", *args], cwd=isolated, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def _all_runs():
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    ids = [e.experiment_id for e in client.search_experiments()]
    return [e.name for e in client.search_experiments()], client.search_runs(ids) if ids else []


def test_mistakes_in_a_sweep_or_a_data_root_create_no_run_and_no_experiment(isolated) -> None:
    typo = _app(isolated, "-m", "model=spectrum,spectrm", "classifier=logreg")
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines()[-1].startswith("error: job model=spectrm classifier=logreg:")
    root = _app(isolated, "-m", "data=folder", f"data.root={isolated},{isolated / 'nope'}")
    assert root.returncode == 2 and "no such folder" in root.stderr.strip().splitlines()[-1]
    single = _app(isolated, "data=folder", f"data.root={isolated / 'nope'}")
    assert single.returncode == 1 and single.stderr.strip().splitlines()[-1].startswith("error: data.root=")
    names, runs = _all_runs()
    assert runs == [] and set(names) <= {"Default"}


def test_a_sweep_with_a_failed_job_exits_3_and_ends_with_its_error(isolated) -> None:
    from fid_bench.errors import PARTLY_FAILED_EXIT
    from tests.conftest import TINY

    done = _app(isolated, "-m", "model=spectrum", "classifier=logreg,finetune", "eval.bootstrap=0", *TINY)
    assert done.returncode == PARTLY_FAILED_EXIT, done.stderr[-2000:]
    assert "1 finished, 1 failed" in done.stdout
    last = done.stderr.strip().splitlines()[-2:]
    assert last[0] == f"1 of 2 jobs failed (exit code {PARTLY_FAILED_EXIT}):"
    assert last[1].startswith("  model=spectrum classifier=finetune") and "cannot be used with" in last[1]
    # the sweep's report: one self-contained page on the parent run, failures included
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    _, runs = _all_runs()
    (parent,) = [r for r in runs if r.data.tags.get("fid_bench.kind") == "parent"]
    page = _artifact_text(client, parent.info.run_id, "report.html")
    assert (
        "<h2>Leaderboard</h2>" in page and "job-spectrum-logreg-none" not in page
    )  # ids and groups, not names
    (job,) = [r for r in runs if r.data.tags.get("fid_bench.kind") == "job" and r.info.status == "FINISHED"]
    assert job.info.run_id[:8] in page and "~top" in page
    assert page.count("data:image/png;base64,") >= 2  # ROC overlay and per-group bars, inline
    assert 'src="http' not in page and "<script" not in page
    assert "<h2>Failed jobs</h2>" in page and "cannot be used with" in page
    # each job's description carries its headline metrics, rounded
    note = job.data.tags["mlflow.note.content"]
    assert f"**roc_auc** {job.data.metrics['roc_auc']:.4f}" in note


def _artifact_text(client, run_id: str, path: str) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def test_a_leave_one_group_out_run_logs_its_report(compose_cfg) -> None:
    from mlflow.tracking import MlflowClient

    from fid_bench.jobs.experiment import run_job

    cfg = compose_cfg(
        "model=spectrum", "classifier=logreg", "cv.leave_one_group_out=true", "eval.bootstrap=0"
    )
    run_job(cfg)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = _all_runs()[1]
    page = _artifact_text(client, run.info.run_id, "report.html")
    assert "<h2>Per held-out group (leave-one-group-out)</h2>" in page and "data:image/png;base64," in page
    assert run.data.tags["mlflow.note.content"].startswith("**roc_auc**")
