"""Split extraction: shards fill one cache that the following job reads with zero extraction."""

from __future__ import annotations

import hashlib
import math

import mlflow
import numpy as np
import pytest

from fid_bench.errors import FidBenchError
from fid_bench.features.shard import Shard, shard_of
from fid_bench.jobs.experiment import run_job
from fid_bench.jobs.shard_job import run_shard_job


def test_shards_partition_by_content() -> None:
    sha1s = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(1000)]
    shards = shard_of(sha1s, 3)
    assert set(shards.tolist()) == {0, 1, 2} and min(np.bincount(shards)) > 250  # every shard gets work
    np.testing.assert_array_equal(shard_of(sha1s[::-1], 3), shards[::-1])  # order does not matter


def test_bad_shard_settings_are_one_line(compose_cfg) -> None:
    assert Shard.of_config(compose_cfg()) is None
    shard = Shard.of_config(compose_cfg("model=spectrum", "features.num_shards=2", "features.shard=1"))
    assert (shard.index, shard.count, shard.encoder["_target_"]) == (
        1,
        2,
        "fid_bench.features.spectrum.SpectrumEncoder",
    )
    for overrides, message in (
        (["features.num_shards=2", "features.shard=2"], r"features.shard must be an integer in \[0, 1\]"),
        (["features.num_shards=2"], "features.shard must be"),
        (["features.num_shards=0", "features.shard=0"], "num_shards must be a positive integer"),
    ):
        with pytest.raises(FidBenchError, match=message):
            Shard.of_config(compose_cfg(*overrides))


def test_shards_fill_the_cache_and_the_sweep_extracts_nothing(compose_cfg) -> None:
    for shard in (0, 1):
        value = run_shard_job(
            compose_cfg("model=spectrum", "features.num_shards=2", f"features.shard={shard}")
        )
        assert math.isnan(value)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert sorted(r.data.tags["features_shard"] for r in runs) == ["0/2", "1/2"]
    extracted = [r.data.metrics["n_extracted"] for r in runs]
    assert all(n > 0 for n in extracted)  # each shard did part of the work ...
    assert sum(extracted) == runs[0].data.metrics["n_images"] + runs[1].data.metrics["n_images"]
    assert "roc_auc" not in runs[0].data.metrics  # ... and nothing else

    auc = run_job(compose_cfg("model=spectrum", "classifier=logreg"))
    assert 0 <= auc <= 1
    (job,) = [
        r
        for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
        if "features_shard" not in r.data.tags
    ]
    assert job.data.metrics["n_extracted"] == 0 and job.data.metrics["cache_hit_ratio"] == 1.0


def test_the_app_runs_a_shard_as_its_own_job(isolated) -> None:
    """``python -m fid_bench features.shard=...`` goes to the shard entry point: cache filled, no model."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, TINY

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fid_bench",
            *TINY,
            "model=spectrum",
            "features.num_shards=2",
            "features.shard=1",
        ],
        cwd=isolated,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["features_shard"] == "1/2" and "roc_auc" not in run.data.metrics
    assert run.data.metrics["n_extracted"] > 0
