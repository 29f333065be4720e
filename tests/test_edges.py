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
        "fid_bench.commands.leaderboard_command", "--tracking-uri", unhealthy_server, cwd=isolated, timeout=90
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


class _Healthy(_Unavailable):
    def _answer(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = _answer


def test_the_probe_takes_only_a_healthy_answer(unhealthy_server: str) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.tracking.store import probe_server

    with pytest.raises(FidBenchError) as err:
        probe_server(unhealthy_server + "/")
    assert str(err.value) == (
        f"tracking server {unhealthy_server}/ is not healthy: /health answered HTTP 503 Service Unavailable"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe_server(f"http://127.0.0.1:{server.server_address[1]}/")  # /health answers 200: no error
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------- 7. a foreign SQLite file
def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def test_a_job_refuses_an_sqlite_file_that_is_not_an_mlflow_store(
    isolated: Path, compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.jobs.experiment import run_job

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
    from fid_bench.config import compose
    from fid_bench.data.inputs import configured_inputs
    from fid_bench.errors import FidBenchError
    from fid_bench.imported_scores import read_predictions_csv

    root = _kaggle_root(tmp_path, "id,target\na,0\nb,1\n", "id,ID\nc,a\n")
    with pytest.raises(
        FidBenchError, match=r"test\.csv: the header names a column more than once .*'id' and 'ID'"
    ):
        configured_inputs(compose(["data=kaggle", f"data.root={root}"]))
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
        "No space left on device: /data/cache/x.tmp (free space or choose another folder)"
    )
    read_only = user_error(OSError(errno.EROFS, "Read-only file system", "/ro/x"))
    assert str(read_only) == "Read-only file system: /ro/x (check its permissions or choose another folder)"
    assert user_error(OSError(errno.ECONNRESET, "reset")) is None  # not a storage problem


# ----------------------------------------------------------------------------- 9. small files, big decodes
def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid small PNG whose header (with a correct CRC) announces ``width`` x ``height``."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IHDR")
    struct.pack_into(">II", data, at + 4, width, height)
    struct.pack_into(">I", data, at + 17, zlib.crc32(bytes(data[at : at + 17])))
    path.write_bytes(bytes(data))
    return path


def _jpeg_claiming(path: Path, width: int, height: int, *, progressive: bool = False) -> Path:
    """A small JPEG whose frame header announces ``width`` x ``height``; its scan holds 16x16."""
    import io
    import struct

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG", quality=75, progressive=progressive)
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_full_decode(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records every full decode (``ImageFile.load``) by image size."""
    from PIL import ImageFile

    loads: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):  # noqa: ANN001, ANN202
        loads.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return loads


@pytest.mark.parametrize("progressive", [False, True])
def test_a_small_jpeg_claiming_a_huge_size_is_truncated_before_any_decode(
    tmp_path: Path, no_full_decode: list, progressive: bool
) -> None:
    from fid_bench.data.decode import ImageDecodeError, check_image, load_rgb
    from fid_bench.data.validation import validate_files

    liar = _jpeg_claiming(tmp_path / "liar.jpg", 6000, 6000, progressive=progressive)
    assert liar.stat().st_size < 2000
    for call in (load_rgb, check_image):
        with pytest.raises(
            ImageDecodeError, match=r"truncated: \d+ bytes cannot hold the 6000x6000 JPEG"
        ) as err:
            call(liar)
        assert err.value.reason == "truncated"
    assert validate_files([str(liar)], cache_dir=None)[0].reason == "truncated"
    # before: decoded whole as a 36-megapixel image padded with grey
    assert (6000, 6000) not in no_full_decode


def test_a_small_png_claiming_a_huge_size_is_truncated_before_any_decode(
    tmp_path: Path, no_full_decode: list
) -> None:
    from fid_bench.data.decode import ImageDecodeError, load_rgb

    liar = _png_claiming(tmp_path / "liar.png", 5000, 4000)
    with pytest.raises(ImageDecodeError, match="truncated: .* cannot hold the 5000x4000 PNG") as err:
        load_rgb(liar)
    assert err.value.reason == "truncated"
    assert no_full_decode == []


def test_genuine_files_stay_above_their_plausible_minimum(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from fid_bench.data.decode import load_rgb

    # the most compressible files there are: flat images, a 1-bit PNG, an optimised progressive JPEG
    Image.new("1", (4000, 3000)).save(tmp_path / "flat1.png", optimize=True)
    Image.new("L", (2000, 2000), 255).save(tmp_path / "flat.jpg", quality=10, optimize=True, progressive=True)
    Image.new("RGB", (2000, 1000), (255, 255, 255)).save(tmp_path / "flat.png", optimize=True)
    Image.fromarray(np.zeros((512, 700), np.uint16)).save(tmp_path / "flat16.png", optimize=True)
    for name, size in (("flat1.png", (4000, 3000)), ("flat.jpg", (2000, 2000)), ("flat.png", (2000, 1000))):
        assert load_rgb(tmp_path / name).size == size, name
    assert load_rgb(tmp_path / "flat16.png").size == (700, 512)


def test_the_limit_bounds_memory_not_only_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from PIL import Image

    from fid_bench.data import decode

    monkeypatch.setenv(decode.MAX_PIXELS_ENV, "1000000")
    size = (1000, 950)  # under the pixel limit
    Image.fromarray(np.zeros(size[::-1], np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGB", size).save(tmp_path / "rgb.png")
    Image.new("RGBA", size).save(tmp_path / "rgba.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    assert decode.load_rgb(tmp_path / "rgb.png").size == size  # 8-bit RGB: the pixel limit decides
    for name in ("deep.png", "rgba.png"):  # before: decoded (a 77 KB 16-bit PNG cost 1.35 GB)
        with pytest.raises(
            decode.ImageDecodeError, match=r"1000x950 \S+ image needs about .* GB to decode"
        ) as err:
            decode.load_rgb(tmp_path / name)
        assert err.value.reason == "too_large"
    # the estimate orders the modes as their measured cost does
    cost = {m: decode.decode_bytes(100, 100, m) for m in ("1", "L", "RGB", "I;16", "RGBA", "I", "F")}
    assert cost["1"] == cost["L"] < cost["RGB"] < cost["I;16"] < cost["RGBA"] < cost["I"] < cost["F"]
    assert decode.decode_bytes(100, 100, "P", transparent=True) == cost["RGBA"]
    assert decode.decode_budget(1_000_000) == decode.decode_bytes(1000, 1000, "RGB")


def test_sixteen_bit_pixels_are_scaled_exactly_as_before(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from fid_bench.data.decode import load_rgb

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(every).save(tmp_path / "every.png")
    got = np.asarray(load_rgb(tmp_path / "every.png"))
    want = np.clip(np.rint(every.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    assert (got == want[:, :, None]).all()


# ----------------------------------------------------------------------------- minor input cases
def _png_file(path: Path, value: int = 100) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fp:  # by content, whatever the name says
        Image.new("RGB", (8, 8), (value, 0, 0)).save(fp, "PNG")
    return path


def test_predict_images_and_the_folder_reader_take_the_same_files(tmp_path: Path) -> None:
    from fid_bench.data.inputs import images_under
    from fid_bench.data.readers import FolderReader

    root = tmp_path / "set"
    _png_file(root / "real" / "a.png")
    _png_file(root / "real" / "scraped_0042", 50)  # no suffix: the reader trains on it
    _png_file(root / "fake" / "b.JPG.png", 200)
    (root / "fake" / "notes.txt").write_text("where these came from")
    trained = sorted(FolderReader(root).read().table["id"])
    scored = images_under(root).ids
    assert trained == ["fake/b.JPG.png", "real/a.png", "real/scraped_0042"]
    assert scored == trained  # before: predict --images left out real/scraped_0042


def test_predict_data_kaggle_needs_no_train_csv(tmp_path: Path) -> None:
    from fid_bench.config import compose
    from fid_bench.data.inputs import configured_inputs

    root = tmp_path / "kaggle"
    _png_file(root / "images" / "t1.png")
    _png_file(root / "images" / "t2.png", 30)
    (root / "test.csv").write_text("id\nt2\nt1.png\n")
    inputs = configured_inputs(compose(["data=kaggle", f"data.root={root}"]))  # before: "train.csv not found"
    assert inputs.ids == ["t2", "t1.png"] and inputs.kind == "kaggle" and inputs.unreadable == {}


def test_kaggle_id_aliases_are_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fid_bench.data.readers import KaggleReader

    root = tmp_path / "kaggle"
    for name, value in (("r004.jpg", 10), ("r005.jpg", 20), ("r006.png", 30)):
        _png_file(root / "images" / name, value)
    (root / "train.csv").write_text(
        "id,target\nr004.jpg,1\nsub/../r004.jpg,1\nr005.jpg,0\nr005,1\nr006.png,0\n"
    )
    (root / "test.csv").write_text("id\nr006.png\n./r006.png\n")
    with caplog.at_level("WARNING"):
        samples = KaggleReader(root).read()
    labelled = samples.table[samples.table["split"] != "predict"]
    assert sorted(labelled["id"]) == ["r004.jpg", "r005.jpg", "r006.png"]  # before: all five rows
    skipped = dict(zip(samples.skipped["id"], samples.skipped["reason"], strict=True))
    assert skipped == {"sub/../r004.jpg": "duplicate_id", "r005": "conflicting_labels"}
    from fid_bench.errors import FidBenchError

    (root / "train.csv").write_text("id,target\nr004.jpg,1\nsub/../r004.jpg,1\n")
    with pytest.raises(
        FidBenchError, match=r"line 3: id 'sub/\.\./r004\.jpg' names the same file as id 'r004\.jpg'"
    ):
        KaggleReader(root, strict=True).read()
    (root / "train.csv").write_text("id,target\nr005.jpg,0\nr005,1\n")
    with pytest.raises(
        FidBenchError, match="names the same file as id 'r005.jpg' above, with target 1 here but 0"
    ):
        KaggleReader(root, strict=True).read()
    # test rows are all kept (a submission needs every one), and the alias is reported
    assert samples.table[samples.table["split"] == "predict"]["id"].tolist() == ["r006.png", "./r006.png"]
    assert "1 ids of test.csv name a file an earlier id names (e.g. './r006.png' = 'r006.png')" in caplog.text


@pytest.mark.parametrize(
    "overrides", [["features.num_shards=2", "features.shard=5"], ["features.num_shards=x"]]
)
def test_bad_shard_values_leave_no_run_behind(isolated: Path, compose_cfg, overrides: list[str]) -> None:
    import mlflow

    from fid_bench.errors import FidBenchError
    from fid_bench.jobs.experiment import run_job

    cfg = compose_cfg("model=spectrum", *overrides)
    with pytest.raises(FidBenchError, match="features.(num_)?shard"):
        run_job(cfg)
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []  # before: a FAILED run per bad value


@pytest.mark.parametrize(
    "bad", ["=cmd|' /C calc'!A1", "@SUM(A1)", "+1+2", "-2+3", "\tx", '=HYPERLINK("http://x")']
)
def test_ids_a_spreadsheet_would_run_are_refused(bad: str) -> None:
    from fid_bench.errors import FidBenchError
    from fid_bench.submission import check_spreadsheet_safe

    with pytest.raises(FidBenchError, match=r"1 id\(s\) start like a spreadsheet formula .*row 2"):
        check_spreadsheet_safe(["a.png", bad, "c.png"])


def test_plain_ids_and_numbers_pass_the_formula_check() -> None:
    from fid_bench.submission import check_spreadsheet_safe

    check_spreadsheet_safe(["a.png", "-1", "+2.5", "1e-3", "x=1", "sub/@home.jpg", "-.5"])


def test_predict_refuses_a_formula_id_before_loading_a_model(isolated: Path, capsys) -> None:
    from fid_bench.commands.predict_command import main

    root = isolated / "kaggle"
    _png_file(root / "images" / "=cmd|calc!A1.png")
    _png_file(root / "images" / "ok.png", 9)
    (root / "test.csv").write_text("id\nok.png\n=cmd|calc!A1.png\n")
    out = isolated / "submission.csv"
    # no such run: the ids are refused before the store is even asked
    code = main(["--run", "no-such-run", "--data", "kaggle", "--root", str(root), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 1 and len(err) == 1 and "start like a spreadsheet formula (e.g. '=cmd|calc!A1.png'" in err[0]
    )
    assert not out.exists() and list(isolated.glob("*.csv")) == []  # before: written verbatim


# ----------------------------------------------------------------------------- store and CSV details
def test_a_store_in_a_new_nested_folder_is_created_with_its_artifact_root(isolated: Path) -> None:
    from fid_bench.tracking.store import open_experiment

    db = isolated / "a" / "b" / "c" / "mlflow.db"
    root = isolated / "artifacts_here"
    client, experiment_id, uri = open_experiment(f"sqlite:///{db}", "nested", artifact_root=root)
    assert db.is_file() and uri == f"sqlite:///{db.resolve()}"
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (root.resolve() / "nested").as_uri()  # the root given, not the default


def test_a_relative_store_is_placed_under_the_given_base_folder(isolated: Path) -> None:
    from fid_bench.tracking.store import open_experiment
    from fid_bench.tracking.ui import NOTE_TAG, experiment_description

    base = isolated / "launched_from"
    client, experiment_id, uri = open_experiment("sqlite:///stores/mlflow.db", "rel", base=base)
    db = (base / "stores" / "mlflow.db").resolve()
    assert db.is_file() and uri == f"sqlite:///{db}" and not (isolated / "stores").exists()
    # a new experiment carries the description the MLflow UI shows on its page
    tags = client.get_experiment(experiment_id).tags
    assert tags[NOTE_TAG] == experiment_description(experiment_id)


def test_an_unreadable_csv_says_why(tmp_path: Path) -> None:
    from fid_bench.data.csv_table import read_csv_table
    from fid_bench.errors import FidBenchError

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FidBenchError) as err:
        read_csv_table(empty, ("id",))
    assert str(err.value) == f"{empty}: not a readable CSV (No columns to parse from file)"
    twice = tmp_path / "twice.csv"
    twice.write_text("id,Id\n1,2\n")
    with pytest.raises(FidBenchError) as err:
        read_csv_table(twice, ("id",))
    assert str(err.value) == (
        f"{twice}: the header names a column more than once (case and spaces ignored): 'id' and 'Id'; "
        "rename or remove the extra column"
    )


def test_a_csv_saved_with_a_byte_order_mark_is_read_by_its_column_names(tmp_path: Path) -> None:
    from fid_bench.data.csv_table import read_csv_table
    from fid_bench.errors import FidBenchError

    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffid,Label\nr1,0\n".encode())
    assert read_csv_table(bom, ("id", "label")).to_dict("list") == {"id": ["r1"], "label": [0]}
    twice = tmp_path / "excel_twice.csv"
    twice.write_bytes("\ufeffid,Id\n1,2\n".encode())
    with pytest.raises(FidBenchError) as err:
        read_csv_table(twice, ("id",))
    assert str(err.value) == (
        f"{twice}: the header names a column more than once (case and spaces ignored): 'id' and 'Id'; "
        "rename or remove the extra column"
    )


def test_tracking_uris_resolve_local_paths_only(tmp_path: Path) -> None:
    from fid_bench.tracking.store import resolve_tracking_uri

    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("store", tmp_path) == (tmp_path / "store").resolve().as_uri()
    assert (
        resolve_tracking_uri("sqlite:///db/m.db", tmp_path)
        == f"sqlite:///{(tmp_path / 'db' / 'm.db').resolve()}"
    )
