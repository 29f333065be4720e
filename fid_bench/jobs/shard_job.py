"""One shard of a split extraction (``features.shard=I features.num_shards=N``): its own entry point.

A shard job fills the feature cache with its share of the data set and logs the extraction's
stats; no model, no metric (it returns NaN, a value no sweeper optimises). See
``fid_bench.features.shard`` for how images are shared out and how the jobs after it find every
feature cached.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from fid_bench.contract import detector_track
from fid_bench.data.readers import read_samples
from fid_bench.errors import FidBenchError
from fid_bench.features.shard import Shard, extract_shard
from fid_bench.tracking.job_run import JobRunSpec, tracked_run


def run_shard_job(cfg: DictConfig, *, parent_run_id: str | None = None) -> float:
    """Extract this shard's images into the cache inside the job's MLflow run; NaN."""
    shard = Shard.of_config(cfg)  # bad values: one line before any run exists
    if shard is None:
        raise FidBenchError("features.shard is not set: this is not a shard of a split extraction")
    run_spec = JobRunSpec.of_config(cfg, track=detector_track(cfg.classifier))
    with tracked_run(run_spec, parent_run_id=parent_run_id) as run:
        samples = read_samples(cfg.data)
        run.log_samples(samples)
        run.set_tags({"features_shard": f"{shard.index}/{shard.count}"})
        run.log_metrics(extract_shard(shard, samples))
    return math.nan
