"""The job spec: the config read once, into built pieces and plain values, before any run exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from fid_bench.errors import FidBenchError
from fid_bench.jobs.job_spec import JobSpec


def test_the_spec_holds_built_pieces_and_plain_values(compose_cfg) -> None:
    from fid_bench.features_track.detector import FeatureDetector

    cfg = compose_cfg(
        "classifier=knn",
        "cv.folds=3",
        "seed=7",
        "eval.bootstrap=11",
        "eval.perturb=[jpeg75]",
        "audit.enabled=false",
        "optimized_metric=f1",
    )
    spec = JobSpec.of_config(cfg)
    assert isinstance(spec.detector, FeatureDetector) and spec.detector.name == "knn"
    assert (spec.folds.folds, spec.folds.seed, spec.folds.leave_one_group_out) == (3, 7, False)
    assert (spec.evaluation.held_out.bootstrap, spec.evaluation.held_out.seed) == (11, 7)
    assert spec.evaluation.perturb == ("jpeg75",) and spec.extra == ()
    assert spec.run.tags["track"] == "features" and spec.run.tags["classifier"] == "knn"
    assert spec.audit is None and spec.optimized_metric == "f1"
    assert spec.cache_dir == Path(cfg.features.cache_dir).expanduser()
    with pytest.raises(AttributeError):
        spec.log_model = True  # frozen: nothing below the top changes what the job is


def test_an_extra_set_is_read_as_the_job_reads_its_data(compose_cfg, tmp_path: Path) -> None:
    root = tmp_path / "other"
    cfg = compose_cfg(
        f"eval.extra=[{{name: other, data: folder, root: {root}, strict: true}}]", "data.max_pixels=1000"
    )
    (extra,) = JobSpec.of_config(cfg).extra
    assert (extra.name, extra.root) == ("other", str(root))
    # the folder option's data node, with the entry's settings and the job's decode limit
    assert extra.data.root == str(root) and extra.data.strict is True and extra.data.max_pixels == 1000
    assert extra.data.reader._target_ == "fid_bench.data.readers.FolderReader"
    # its interpolations resolve in a config of its own (the job's data is the demo)
    assert extra.data.reader.root == str(root) and extra.data.reader.cache_dir == cfg.features.cache_dir


def test_bad_extra_sets_fail_before_any_run(isolated: Path, compose_cfg) -> None:
    import mlflow

    from fid_bench.jobs.experiment import run_job

    with pytest.raises(FidBenchError, match="unknown data='nope'"):
        run_job(compose_cfg("eval.extra=[{name: x, data: nope, root: /tmp}]"))
    with pytest.raises(FidBenchError, match="lacks 'root'"):
        run_job(compose_cfg("eval.extra=[{name: x, data: folder}]"))
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []  # no run was opened for a job that cannot finish


def test_a_shard_is_its_own_entry_point(compose_cfg) -> None:
    # an ordinary job given a shard config says so in one line instead of training on all rows
    with pytest.raises(FidBenchError, match="features.shard is set: a shard of a split extraction"):
        JobSpec.of_config(compose_cfg("model=spectrum", "features.num_shards=2", "features.shard=0"))
