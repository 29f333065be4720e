"""The leaderboard: ranking, filters, formats, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fid_bench import cli
from fid_bench.commands import leaderboard_command as leaderboard_module
from fid_bench.tracking.leaderboard import format_duration
from tests.conftest import REPO
from tests.tracking_support import install_store, make_template_store

T0 = 1_700_000_000_000  # ms


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template_store(tmp_path_factory.mktemp("mlflow_template"))


def _run(client, exp_id, name, tags, metrics, *, status="FINISHED", seconds=10.0, parent=None):
    tags = {"fid_bench.kind": "job", **tags}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, start_time=T0, tags=tags, run_name=name)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status, end_time=T0 + int(seconds * 1000))
    return run.info.run_id


def _tags(model, classifier="logreg", balance="none", data="demo"):
    return {"model": model, "classifier": classifier, "balance": balance, "data": data}


@pytest.fixture
def runs(isolated: Path, template_db: Path) -> dict[str, str]:
    """exp_a: a parent with two children, a third job, a failed one; exp_b: losses; empty: nothing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(install_store(template_db, isolated))
    a = client.create_experiment("exp_a")
    b = client.create_experiment("exp_b")
    client.create_experiment("empty")
    ids = {}
    ids["parent"] = _run(
        client, a, "sweep", {"fid_bench.kind": "parent"}, {"best_roc_auc": 0.99, "roc_auc": 0.99}
    )
    ids["resnet"] = _run(
        client,
        a,
        "resnet50-logreg-none",
        _tags("resnet50"),
        {"roc_auc": 0.9, "f1": 0.8, "average_precision": 0.85, "threshold": 0.4},
        parent=ids["parent"],
        seconds=75,
    )
    ids["clip"] = _run(
        client,
        a,
        "clip-logreg-none",
        _tags("clip_vit_b32"),
        {"roc_auc": 0.95, "roc_auc_std": 0.01, "f1": 0.9, "f1_std": 0.02, "threshold": 0.5},
        parent=ids["parent"],
        seconds=3.25,
    )
    ids["resnet_over"] = _run(
        client,
        a,
        "resnet50-rf-oversample",
        _tags("resnet50", "rf", "oversample"),
        {"roc_auc": 0.7, "f1": 0.6},
    )
    ids["failed"] = _run(client, a, "broken", _tags("small_cnn", "finetune"), {}, status="FAILED")
    ids["loss_hi"] = _run(client, b, "b1", _tags("spectrum"), {"roc_auc": 0.6, "log_loss": 0.3})
    ids["loss_lo"] = _run(client, b, "b2", _tags("spectrum", "rf"), {"roc_auc": 0.5, "log_loss": 0.1})
    return ids


def lb(capsys, *argv: str) -> tuple[int, str, str]:
    code = leaderboard_module.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------- ranking and filters


def test_sorted_by_metric_without_parents_or_failures(runs, capsys):
    code, out, err = lb(capsys, "--experiment", "exp_a", "--format", "csv")
    assert code == 0, err
    rows = csv_rows(out)
    assert [r["run_id"] for r in rows] == [runs["clip"], runs["resnet"], runs["resnet_over"]]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["roc_auc"] == "0.95" and rows[0]["roc_auc_std"] == "0.01"
    assert rows[1]["average_precision"] == "0.85" and rows[1]["duration_s"] == "75.0"


def test_sort_by_another_metric_and_ascending(runs, capsys):
    _, out, _ = lb(capsys, "-e", "exp_a", "-m", "f1", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["clip"], runs["resnet"], runs["resnet_over"]]
    _, out, _ = lb(capsys, "-e", "exp_b", "-m", "log_loss", "--ascending", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["loss_lo"], runs["loss_hi"]]
    # a loss ranks lowest first by default (the metric registry), --descending overrides it
    _, out, _ = lb(capsys, "-e", "exp_b", "-m", "log_loss", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["loss_lo"], runs["loss_hi"]]
    _, out, _ = lb(capsys, "-e", "exp_b", "-m", "log_loss", "--descending", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["loss_hi"], runs["loss_lo"]]
    # ... and a score largest first unless --ascending
    _, out, _ = lb(capsys, "-e", "exp_a", "-m", "f1", "--ascending", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["resnet_over"], runs["resnet"], runs["clip"]]


def test_top_limits_rows(runs, capsys):
    _, out, _ = lb(capsys, "-e", "exp_a", "--top", "2", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["clip"], runs["resnet"]]
    _, out, _ = lb(capsys, "-e", "exp_a", "--top", "2")
    assert "top 2 of 3" not in out  # no heading for a single named experiment
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 2


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--filter", "model=resnet50"], ["resnet", "resnet_over"]),
        (["--filter", "model=resnet50", "--filter", "balance=none"], ["resnet"]),
        (["--filter", "model=resnet50,clip_vit_b32"], ["clip", "resnet", "resnet_over"]),
        (["--filter", "classifier=rf"], ["resnet_over"]),
    ],
)
def test_tag_filters(runs, capsys, filters, expected):
    code, out, err = lb(capsys, "-e", "exp_a", "-f", "csv", *filters)
    assert code == 0, err
    assert [r["run_id"] for r in csv_rows(out)] == [runs[k] for k in expected]


def test_status_filter(runs, capsys):
    _, out, _ = lb(capsys, "-e", "exp_a", "--status", "FAILED", "-f", "csv")
    rows = csv_rows(out)
    assert [r["run_id"] for r in rows] == [runs["failed"]] and rows[0]["status"] == "FAILED"
    _, out, _ = lb(capsys, "-e", "exp_a", "--status", "all", "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [
        runs[k] for k in ("clip", "resnet", "resnet_over", "failed")
    ]
    _, out, _ = lb(capsys, "-e", "exp_a", "--status", "ALL")
    assert out.splitlines()[0].split()[-1] == "status"  # the column appears when statuses mix


def test_children_of_a_parent(runs, capsys):
    _, out, _ = lb(capsys, "--parent", runs["parent"], "-f", "csv")
    assert [r["run_id"] for r in csv_rows(out)] == [runs["clip"], runs["resnet"]]


def test_all_experiments_grouped_by_default(runs, capsys):
    code, out, _ = lb(capsys)
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("experiment:")]
    assert headings == ["experiment: exp_a (3 runs, by roc_auc)", "experiment: exp_b (2 runs, by roc_auc)"]
    _, out, _ = lb(capsys, "-f", "csv")
    assert [r["experiment"] for r in csv_rows(out)] == ["exp_a"] * 3 + ["exp_b"] * 2


# --------------------------------------------------------------------------- formats


def test_table_shows_key_columns_and_mean_std(runs, capsys):
    _, out, _ = lb(capsys, "-e", "exp_a")
    lines = out.splitlines()
    assert lines[0].split() == [
        "#",
        "run",
        "model",
        "classifier",
        "balance",
        "data",
        "roc_auc",
        "f1",
        "average_precision",
        "threshold",
        "test",
        "rows",
        "duration",
    ]
    first = lines[2]
    assert first.split()[:6] == ["1", runs["clip"][:8], "clip_vit_b32", "logreg", "none", "demo"]
    assert "0.9500 ± 0.0100" in first and "0.9000 ± 0.0200" in first and "3.2s" in first
    second = lines[3]
    assert "0.9000" in second and "±" not in second and "1m 15s" in second
    assert lines[4].split()[8] == "-"  # average_precision never logged by that run


def _cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])


def test_markdown_is_a_valid_github_table(runs, capsys):
    from mlflow.tracking import MlflowClient

    # a pipe inside a value must not break the table
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp_a = client.get_experiment_by_name("exp_a").experiment_id
    _run(client, exp_a, "odd", _tags("a|b"), {"roc_auc": 0.1})

    _, out, _ = lb(capsys, "-e", "exp_a", "--format", "markdown")
    lines = out.splitlines()
    header, separator, body = lines[0], lines[1], lines[2:]
    n = len(_cells(header))
    assert n == 12
    assert all(re.fullmatch(r":?-{3,}:?", c.strip()) for c in _cells(separator))
    assert len(_cells(separator)) == n
    assert len(body) == 4 and all(len(_cells(row)) == n for row in body)
    assert "a\\|b" in body[-1]


def test_markdown_for_all_experiments_has_headings(runs, capsys):
    _, out, _ = lb(capsys, "-f", "markdown")
    assert [line for line in out.splitlines() if line.startswith("### ")] == [
        "### exp_a (3 runs, by roc_auc)",
        "### exp_b (2 runs, by roc_auc)",
    ]


def test_format_duration():
    assert [format_duration(s) for s in (0.04, 59.94, 61, 3599, 3600 * 2 + 60 * 5)] == [
        "0.0s",
        "59.9s",
        "1m 01s",
        "59m 59s",
        "2h 05m",
    ]
    assert format_duration(float("nan")) == "-"


# --------------------------------------------------------------------------- bad arguments


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-e", "nope"], "unknown experiment 'nope' (known: Default, empty, exp_a, exp_b)"),
        (
            ["-e", "exp_a", "-m", "accuracy"],
            "metric 'accuracy' was never logged in experiment 'exp_a' "
            "(logged: average_precision, f1, roc_auc, threshold)",
        ),
        (["-m", "accuracy"], "metric 'accuracy' was never logged in any experiment"),
        (["-e", "empty"], "experiment 'empty' has no runs"),
        (["-e", "exp_a", "--filter", "model=vgg"], "no FINISHED model=vgg runs in experiment 'exp_a'"),
        (["--parent", "f" * 32], f"unknown parent run '{'f' * 32}'"),
        (["--tracking-uri", "sqlite:///elsewhere/mlflow.db"], "no tracking store at"),
    ],
)
def test_bad_requests_exit_2_with_one_line(runs, capsys, argv, message):
    code, out, err = lb(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("fid-bench leaderboard: error: ") and message in err


def test_unreachable_server_and_foreign_database(runs, capsys, tmp_path):
    code, _, err = lb(capsys, "--tracking-uri", f"http://127.0.0.1:{_closed_port()}")
    assert code == 2 and "cannot reach tracking server" in err and len(err.strip().splitlines()) == 1
    foreign = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    code, _, err = lb(capsys, "--tracking-uri", f"sqlite:///{foreign}")
    assert code == 2 and "is not an MLflow tracking database" in err
    with sqlite3.connect(foreign) as conn:  # reading left the file alone
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--filter", "model"], "expected KEY=VALUE"),
        (["--format", "html"], "invalid choice: 'html'"),
        (["--top", "-1"], "must be >= 0"),
        (["--status", "DONE"], "invalid choice: 'DONE'"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, message):
    code = leaderboard_module.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- entry points


def test_fid_bench_cli_leaderboard_subcommand(runs, capsys):
    code = cli.main(["leaderboard", "-e", "exp_b", "-f", "csv", "-m", "log_loss", "--ascending"])
    out, _ = capsys.readouterr()
    assert code == 0 and [r["run_id"] for r in csv_rows(out)] == [runs["loss_lo"], runs["loss_hi"]]
    code = cli.main(["leaderboard", "-e", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fid-bench leaderboard: error: unknown experiment 'nope'")


def _help(runner, argv: list[str], capsys) -> str:
    """--help exits 0: through SystemExit (argparse inside ``fid-bench``) or as the standalone's return code."""
    try:
        code = runner(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    return capsys.readouterr().out


def test_help_everywhere(capsys):
    top = _help(cli.main, ["--help"], capsys)
    assert top.startswith("usage: fid-bench") and "leaderboard" in top
    for runner, argv in ((cli.main, ["leaderboard", "--help"]), (leaderboard_module.main, ["--help"])):
        text = _help(runner, argv, capsys)
        for option in (
            "--experiment",
            "--metric",
            "--top",
            "--format",
            "--tracking-uri",
            "--filter KEY=VALUE",
        ):
            assert option in text
        assert "--status" in text and "--parent" in text and "--ascending" in text and "--descending" in text
    with pytest.raises(SystemExit) as exc:
        cli.main([])  # a subcommand is required
    assert exc.value.code == 2


@pytest.mark.slow  # two interpreters importing mlflow
def test_module_entry_points_in_a_subprocess(runs, isolated):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ok = subprocess.run(
        [sys.executable, "-m", "fid_bench.commands.leaderboard_command", "-e", "exp_a", "-f", "markdown"],
        cwd=isolated,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[2].startswith(f"| 1 | {runs['clip'][:8]} |")
    bad = subprocess.run(
        [sys.executable, "-m", "fid_bench.cli", "leaderboard", "-e", "exp_a", "-m", "nope"],
        cwd=isolated,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "fid-bench leaderboard: error: metric 'nope' was never logged in experiment 'exp_a' "
        "(logged: average_precision, f1, roc_auc, threshold)"
    ]


def test_a_metric_never_logged_is_refused_whatever_the_status_filter(runs, capsys):
    # finished runs exist: a metric none of them logged is a typo, even when failed runs are listed too
    code, out, err = lb(capsys, "-e", "exp_a", "--status", "all", "-m", "nope")
    assert code == 2 and out == "" and "metric 'nope' was never logged in experiment 'exp_a'" in err


def test_the_roc_auc_interval_is_shown_beside_roc_auc(isolated, template_db, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(install_store(template_db, isolated))
    exp = client.create_experiment("exp_ci")
    metrics = {"roc_auc": 0.93, "roc_auc_ci_low": 0.9, "roc_auc_ci_high": 0.96}
    _run(client, exp, "with-ci", _tags("spectrum"), metrics)
    code, out, err = lb(capsys, "-e", "exp_ci")
    assert code == 0, err
    assert "roc_auc 95% CI" in out.splitlines()[0]
    assert "[0.9000, 0.9600]" in out.splitlines()[2]


def test_duration_of_a_run_without_end_time_runs_to_now_only_while_running():
    from types import SimpleNamespace

    from fid_bench.tracking.leaderboard import runs_frame

    def fake(status: str, run_id: str) -> SimpleNamespace:
        info = SimpleNamespace(
            experiment_id="1", run_id=run_id, run_name=run_id, status=status, start_time=T0, end_time=None
        )
        return SimpleNamespace(info=info, data=SimpleNamespace(tags={}, params={}, metrics={}))

    frame = runs_frame([fake("RUNNING", "a"), fake("FAILED", "b")], {"1": "exp"})
    running, failed = frame["duration_s"].tolist()
    assert running > 0  # still going: measured up to now
    assert failed != failed  # NaN: a run that stopped without an end time has no known duration


def test_a_parent_without_children_is_one_line_across_all_experiments(runs, capsys):
    code, out, err = lb(capsys, "--parent", runs["resnet"])
    assert code == 2 and out == "" and f"run {runs['resnet']} has no child runs" in err
