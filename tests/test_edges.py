"""The edges found by the third adversarial pass (docs/ADVERSARIAL.md, "Edges, round three"): an
unhealthy tracking server, an unwritable or full cache, a foreign SQLite file, duplicate CSV headers,
small files that decode big, and the minor input cases. Each ends in one line, never a traceback,
never a silent choice."""

from __future__ import annotations

import http.server
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY


def _run(module: str, *args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- 5. an unhealthy server
class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A tracking server (or the proxy in front of a stopped one) that answers 503 to everything."""

    def _answer(self) -> None:
        self.send_response(503, "Service Unavailable")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unhealthy_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_answering_503_fails_a_read_command_at_once(isolated: Path, unhealthy_server: str) -> None:
    # before: the probe took any HTTP answer and MLflow retried the 503s for about 4 minutes
    proc = _run(
        "fid_bench.commands.leaderboard", "--tracking-uri", unhealthy_server, cwd=isolated, timeout=90
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert f"tracking server {unhealthy_server} is not healthy: /health answered HTTP 503" in lines[0]


def test_a_server_answering_503_stops_a_job_before_it_starts(isolated: Path, unhealthy_server: str) -> None:
    proc = _run("fid_bench", *TINY, cwd=isolated, timeout=90, MLFLOW_TRACKING_URI=unhealthy_server)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: tracking server {unhealthy_server} is not healthy: /health answered HTTP 503 Service Unavailable"
    ]
    assert not (isolated / "cache" / "demo_data").exists()  # stopped before reading any data


# ----------------------------------------------------------------------------- 7. a foreign SQLite file
def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def test_a_job_refuses_an_sqlite_file_that_is_not_an_mlflow_store(
    isolated: Path, compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.experiment import run_job

    foreign = isolated / "inventory.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE parts (id INTEGER, name TEXT)")
        conn.execute("INSERT INTO parts VALUES (1, 'bolt')")
    before = foreign.read_bytes()
    cfg = compose_cfg(f"tracking.uri=sqlite:///{foreign}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # tracking.uri decides
    with pytest.raises(
        FidBenchError,
        match=r"inventory\.db is not an MLflow tracking database \(it holds other tables: parts\)",
    ):
        run_job(cfg)
    assert _tables(foreign) == ["parts"]  # before: 65 MLflow tables were added and the job ran
    assert foreign.read_bytes() == before


def test_a_job_still_creates_a_store_in_a_missing_or_empty_file(isolated: Path) -> None:
    from fid_bench.tracking.store import connect, sqlite_store_problem

    empty = isolated / "new" / "empty.db"
    empty.parent.mkdir()
    empty.touch()
    assert sqlite_store_problem(empty) is None
    assert sqlite_store_problem(isolated / "missing.db") is None
    connect(f"sqlite:///{empty}").search_experiments()
    assert "experiments" in _tables(empty)
    assert sqlite_store_problem(empty) is None  # and uses it again
    # reading never accepts an empty file: it would create the tables
    (isolated / "blank.db").touch()
    assert "holds no tables" in sqlite_store_problem(isolated / "blank.db", new_ok=False)
