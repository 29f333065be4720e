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


# ----------------------------------------------------------------------------- 8. duplicate CSV headers
def _kaggle_root(tmp_path: Path, train: str, test: str) -> Path:
    from PIL import Image

    root = tmp_path / "kaggle"
    (root / "images").mkdir(parents=True)
    for name, colour in (("a", 0), ("b", 255), ("c", 128)):
        Image.new("RGB", (8, 8), (colour, 0, 0)).save(root / "images" / f"{name}.png")
    (root / "train.csv").write_text(train)
    (root / "test.csv").write_text(test)
    return root


@pytest.mark.parametrize(
    ("train", "test", "named"),
    [
        # before: the second column silently won, inverting every label
        ("id,target,TARGET\na,0,1\nb,1,0\n", "id\nc\n", "'target' and 'TARGET'"),
        ("id,target\na,0\nb,1\n", "id,ID\nc,a\n", "'id' and 'ID'"),  # before: a traceback
        ("id, Target ,target\na,0,1\nb,1,0\n", "id\nc\n", "' Target ' and 'target'"),
        ("id,id,target\na,a,0\nb,b,1\n", "id\nc\n", "'id' and 'id'"),
    ],
)
def test_a_kaggle_csv_naming_a_column_twice_is_one_line(
    tmp_path: Path, train: str, test: str, named: str
) -> None:
    from fid_bench.data.readers import KaggleReader
    from fid_bench.errors import FidBenchError

    root = _kaggle_root(tmp_path, train, test)
    with pytest.raises(FidBenchError, match="names a column more than once") as err:
        KaggleReader(root).read()
    assert named in str(err.value) and "\n" not in str(err.value)


def test_predict_and_import_refuse_a_header_naming_a_column_twice(tmp_path: Path) -> None:
    from fid_bench.data.inputs import kaggle_inputs
    from fid_bench.errors import FidBenchError
    from fid_bench.imported import read_predictions_csv

    root = _kaggle_root(tmp_path, "id,target\na,0\nb,1\n", "id,ID\nc,a\n")
    with pytest.raises(
        FidBenchError, match=r"test\.csv: the header names a column more than once .*'id' and 'ID'"
    ):
        kaggle_inputs(root, tmp_path / "cache")
    scores = tmp_path / "scores.csv"
    scores.write_text("id,score,Score\na,0.1,0.9\nb,0.8,0.2\n")  # before: a traceback
    with pytest.raises(
        FidBenchError, match=r"scores\.csv: the header names a column more than once .*'score' and 'Score'"
    ):
        read_predictions_csv(scores)


def test_a_header_without_repeats_still_reads_in_any_case(tmp_path: Path) -> None:
    from fid_bench.data.readers import KaggleReader

    root = _kaggle_root(tmp_path, " ID ,Target\na,0\nb,1\n", "Id\nc\n")
    table = KaggleReader(root).read().table
    assert dict(zip(table["id"], table["label"], strict=True)) == {"a": 0, "b": 1, "c": -1}


# ----------------------------------------------------------------------------- 6. unwritable or full cache
FAULTS = REPO / "tests" / "faults"  # a sitecustomize that makes writes below a folder fail (see there)


@pytest.fixture
def demo_outside_cache(isolated: Path, compose_cfg) -> Path:
    """The TINY demo data set, generated outside the cache folder the faults will hit."""
    from hydra.utils import instantiate

    root = isolated / "demo_data"
    instantiate(compose_cfg(f"data.root={root}").data.reader).read()
    return root


@pytest.mark.parametrize(
    ("fault", "reason"), [("readonly", "Read-only file system"), ("full", "No space left on device")]
)
def test_an_unwritable_or_full_cache_is_one_line_and_left_clean(
    isolated: Path, demo_outside_cache: Path, fault: str, reason: str
) -> None:
    cache = isolated / "faulty_cache"
    cache.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "fid_bench", *TINY, f"data.root={demo_outside_cache}"],
        cwd=isolated,
        env=dict(
            os.environ,
            PYTHONPATH=f"{FAULTS}{os.pathsep}{REPO}",
            FID_BENCH_CACHE_DIR=str(cache),
            FID_BENCH_FAULT_ROOT=str(cache),
            FID_BENCH_FAULT=fault,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]  # before: 25-43 lines of traceback
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: feature cache {cache / 'features'}: cannot write ({reason}); free space or point features.cache_dir "
        "(FID_BENCH_CACHE_DIR) at a writable folder"
    ], out[-3000:]
    left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    # clean: no half-written file, no feature folder holding only metadata (the audit's cache,
    # written whole by pyarrow beside the simulated full disk, may stay)
    assert [name for name in left if "tmp" in name or name.startswith("features/")] == [], left


def test_a_storage_oserror_anywhere_becomes_one_line() -> None:
    import errno

    from fid_bench.errors import user_error

    full = OSError(errno.ENOSPC, "No space left on device", "/data/cache/x.tmp")
    wrapped = RuntimeError("while instantiating")
    wrapped.__cause__ = full
    assert str(user_error(wrapped)) == (
        "No space left on device: /data/cache/x.tmp (free space or make the folder writable)"
    )
    assert user_error(OSError(errno.ECONNRESET, "reset")) is None  # not a storage problem
