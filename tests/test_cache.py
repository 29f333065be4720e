"""The content-addressed feature cache: round trips, content keys, crash safety, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fid_bench.errors import FidBenchError
from fid_bench.features.cache import FeatureCache, identity_dirname
from tests.conftest import REPO

IDENTITY = 'TestEncoder:test {"dim":4}'
DIM = 4


def sha(i: int) -> str:
    return hashlib.sha1(f"image-{i}".encode()).hexdigest()


def vec(i: int, dim: int = DIM) -> np.ndarray:
    """Deterministic features of image ``i``: any reader can check any row."""
    return (np.arange(dim, dtype=np.float32) + 1.0) * np.float32(i) + np.float32(0.5)


def rows(ids, dim: int = DIM) -> np.ndarray:
    return np.stack([vec(i, dim) for i in ids]) if len(ids) else np.empty((0, dim), np.float32)


def feats_files(cache: FeatureCache) -> list[str]:
    return sorted(p.name for p in cache.dir.glob("*.feats"))


def test_put_get_missing_round_trip(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY, meta={"params": {"a": 1}})
    assert cache.missing([sha(1), sha(2), sha(1)]) == [sha(1), sha(2)]  # each once, first-seen order
    assert cache.put([sha(i) for i in range(5)], rows(range(5))) == 5
    # any order, repeats allowed
    order = [3, 0, 3, 4]
    np.testing.assert_array_equal(cache.get([sha(i) for i in order]), rows(order))
    assert cache.missing([sha(i) for i in (0, 7, 4, 8, 7)]) == [sha(7), sha(8)]
    assert cache.contains([sha(0), sha(9)]).tolist() == [True, False]
    with pytest.raises(KeyError, match="1 of 2"):
        cache.get([sha(0), sha(9)])
    # a second instance (another process) sees the same data
    again = FeatureCache(tmp_path, IDENTITY)
    np.testing.assert_array_equal(again.get([sha(4)]), rows([4]))
    assert len(again) == 5


def test_put_skips_known_and_repeated_rows(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY)
    assert cache.put([sha(0), sha(1), sha(0)], rows([0, 1, 0])) == 2
    assert cache.put([sha(1), sha(2)], rows([1, 2])) == 1
    assert cache.put([sha(1)], rows([1])) == 0
    assert len(feats_files(cache)) == 2 and len(cache) == 3


def test_meta_json_describes_the_features(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY, meta={"name": "test", "params": {"tile": 64}})
    cache.update_meta({"weights": "sha256:abc"})
    cache.put([sha(0)], rows([0]))
    meta = json.loads((cache.dir / "meta.json").read_text())
    assert meta["identity"] == IDENTITY and meta["dim"] == DIM and meta["dtype"] == "float32"
    assert meta["encoder"] == {"name": "test", "params": {"tile": 64}, "weights": "sha256:abc"}
    assert meta["fid_bench_version"] and meta["created"].startswith("20")
    assert cache.dir.parent == tmp_path and cache.dir.name == identity_dirname(IDENTITY)


def test_identities_are_kept_apart(tmp_path: Path) -> None:
    a = FeatureCache(tmp_path, IDENTITY)
    b = FeatureCache(tmp_path, IDENTITY.replace("4", "5"))
    a.put([sha(0)], rows([0]))
    assert a.dir != b.dir and b.missing([sha(0)]) == [sha(0)]
    # a folder whose meta names another identity is refused instead of being mixed up
    meta = json.loads((a.dir / "meta.json").read_text())
    meta["identity"] = "something else"
    (a.dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FidBenchError, match="another encoder identity"):
        FeatureCache(tmp_path, IDENTITY)


def test_bad_input_is_refused(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY)
    with pytest.raises(ValueError, match="sha1"):
        cache.missing(["not-a-sha1"])
    with pytest.raises(ValueError, match="NaN"):
        cache.put([sha(0)], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\[2, dim\]"):
        cache.put([sha(0), sha(1)], rows([0]))
    cache.put([sha(0)], rows([0]))
    with pytest.raises(ValueError, match="dim 4"):
        cache.put([sha(1)], rows([1], dim=3))
    assert cache.missing([sha(1)]) == [sha(1)]


def test_killed_writer_leftovers_leave_a_readable_cache(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY)
    cache.put([sha(i) for i in range(10)], rows(range(10)))
    cache.put([sha(i) for i in range(10, 20)], rows(range(10, 20)))
    good = cache.dir / feats_files(cache)[1]
    # a writer killed while writing: its temp file (never renamed) ...
    (cache.dir / ".tmp-deadbeef.feats").write_bytes(good.read_bytes()[:100])
    # ... and a chunk that is complete in name only (e.g. a crash on a filesystem without atomic rename)
    partial = cache.dir / "chunk-00000000000000000001-1-partial.feats"
    partial.write_bytes(good.read_bytes()[:-7])
    good.unlink()  # its rows now live only in the partial copy

    reader = FeatureCache(tmp_path, IDENTITY)
    assert reader.missing([sha(i) for i in range(20)]) == [sha(i) for i in range(10, 20)]
    np.testing.assert_array_equal(reader.get([sha(i) for i in range(10)]), rows(range(10)))
    # the next run extracts only what is missing, and maintenance removes the broken file
    reader.put([sha(i) for i in range(10, 20)], rows(range(10, 20)))
    assert reader.consolidate(force=True)
    assert not partial.exists()
    np.testing.assert_array_equal(
        FeatureCache(tmp_path, IDENTITY).get([sha(i) for i in range(20)]), rows(range(20))
    )


def test_consolidation_merges_chunks_and_keeps_every_row(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, IDENTITY)
    for start in range(0, 60, 10):
        cache.put([sha(i) for i in range(start, start + 10)], rows(range(start, start + 10)))
    reader = FeatureCache(tmp_path, IDENTITY)
    reader.get([sha(0)])  # indexed the chunks before they are merged away
    assert len(feats_files(cache)) == 6
    assert cache.consolidate()
    files = feats_files(cache)
    assert len(files) == 1 and files[0].startswith("pack-")
    ids = list(range(59, -1, -1))
    np.testing.assert_array_equal(reader.get([sha(i) for i in ids]), rows(ids))
    np.testing.assert_array_equal(FeatureCache(tmp_path, IDENTITY).get([sha(i) for i in ids]), rows(ids))
    assert not cache.consolidate()  # nothing left to merge


def test_duplicates_across_files_are_tolerated_and_merged_once(tmp_path: Path) -> None:
    from fid_bench.features.cache import KEY_DTYPE, _open_file

    cache = FeatureCache(tmp_path, IDENTITY)
    cache.put([sha(i) for i in range(8)], rows(range(8)))
    # two jobs that raced: each checked before the other wrote, so rows 4..7 are stored twice
    ids = list(range(4, 12))
    cache._write_file(
        "chunk-00000000000000000002-2-raced.feats", np.asarray([sha(i) for i in ids], KEY_DTYPE), rows(ids)
    )  # noqa: SLF001
    reader = FeatureCache(tmp_path, IDENTITY)
    assert len(reader) == 12
    np.testing.assert_array_equal(reader.get([sha(i) for i in range(12)]), rows(range(12)))
    reader.consolidate(force=True)
    (pack,) = feats_files(reader)
    assert len(_open_file(reader.dir / pack).keys) == 12  # each key stored once after merging


def _writer(root: str, ids: list[int], barrier) -> None:
    cache = FeatureCache(Path(root), IDENTITY)
    barrier.wait()
    for start in range(0, len(ids), 7):
        part = ids[start : start + 7]
        cache.put([sha(i) for i in part], rows(part))
        if start % 21 == 0:
            cache.consolidate()


def test_two_processes_writing_at_once_leave_every_entry_readable(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    # overlapping ranges: both processes write ids 100..149
    ids_a, ids_b = list(range(0, 150)), list(range(100, 250))
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), ids, barrier)) for ids in (ids_a, ids_b[::-1])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = FeatureCache(tmp_path, IDENTITY)
    assert cache.missing([sha(i) for i in range(250)]) == []
    np.testing.assert_array_equal(cache.get([sha(i) for i in range(250)]), rows(range(250)))
    assert not list(cache.dir.glob(".tmp-*"))
    cache.consolidate(force=True)
    np.testing.assert_array_equal(
        FeatureCache(tmp_path, IDENTITY).get([sha(i) for i in range(250)]), rows(range(250))
    )


KILL_SCRIPT = """
import sys, time, numpy as np
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.test_cache import FeatureCache, IDENTITY, sha, rows
cache = FeatureCache(Path({root!r}), IDENTITY)
for start in range(0, 100000, 50):
    ids = list(range(start, start + 50))
    cache.put([sha(i) for i in ids], rows(ids))
    print(start + 50, flush=True)
"""


def test_writer_killed_mid_run_leaves_a_valid_cache(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(repo=str(REPO), root=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    written = 0
    while written < 500:  # let it write a few hundred rows, then kill it without warning
        line = proc.stdout.readline()
        assert line, "writer died early"
        written = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    cache = FeatureCache(tmp_path, IDENTITY)
    present = np.flatnonzero(cache.contains([sha(i) for i in range(written + 5000)]))
    assert len(present) >= written
    # whatever was written is whole: every present row has exactly its values, in whole chunks
    np.testing.assert_array_equal(cache.get([sha(i) for i in present]), rows(present))
    assert present.tolist() == list(range(len(present))) and len(present) % 50 == 0


def test_reading_100k_rows_in_a_new_reader(tmp_path: Path) -> None:
    """Correctness at scale; the speed of this read is measured by benchmarks/core.py."""
    n, dim = 120_000, 32
    cache = FeatureCache(tmp_path, IDENTITY)
    keys = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(n)]
    feats = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):
        cache.put(keys[start : start + 10_000], feats[start : start + 10_000])
    cache.consolidate(force=True)
    query = keys[::-1]
    reader = FeatureCache(tmp_path, IDENTITY)
    assert reader.missing(query) == []
    np.testing.assert_array_equal(reader.get(query), feats[::-1])
