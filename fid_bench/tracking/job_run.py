"""``tracked_run(spec)``: the MLflow run every job goes through.

On entry: connect to the store, make sure the experiment exists, start the job's run (nested under
the multirun's parent run when there is one), log the resolved config as params and as
``config.yaml``. On exit the run is always ended (``logged_run.closing_run``). ``JobRunSpec`` holds
everything the run needs, read once from the config at the top of the job (``JobRunSpec.of_config``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fid_bench.tracking.kinds import RunKind
from fid_bench.tracking.logged_run import SilentRun, TrackedRun, closing_run, distributed_rank
from fid_bench.tracking.logged_values import flatten_config, resolved_config
from fid_bench.tracking.run_factory import start_run
from fid_bench.tracking.run_tags import job_tags_of_config, run_name_of
from fid_bench.tracking.store import TrackingSettings, original_cwd
from fid_bench.tracking.sweep_files import multirun_parent, multirun_sweep_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRunSpec:
    """What a job's run needs: where it goes, its tags (``run_tags.job_tags``), the resolved config it
    logs, and the multirun's sweep dir (where its parent run is recorded; None outside a multirun)."""

    tracking: TrackingSettings
    tags: Mapping[str, str]
    config: Mapping[str, Any] = field(default_factory=dict)
    sweep_dir: Path | None = None

    @property
    def name(self) -> str:
        return run_name_of(self.tags)

    @classmethod
    def of_config(cls, cfg: DictConfig) -> JobRunSpec:
        """Everything read from the composed config and the running Hydra job."""
        return cls(
            tracking=TrackingSettings.of_config(cfg.get("tracking"), original_cwd()),
            tags=job_tags_of_config(cfg),
            config=resolved_config(cfg),
            sweep_dir=multirun_sweep_dir(),
        )


@contextmanager
def tracked_run(spec: JobRunSpec, *, parent_run_id: str | None = None) -> Iterator[TrackedRun]:
    """Run one job inside an MLflow run (see the module docstring).

    ``parent_run_id`` nests the run explicitly; by default a job of a Hydra multirun finds its
    parent in the sweep dir (``ParentRunCallback``). In a distributed (DDP) job only rank 0 logs:
    the other ranks re-run the same entry point and get a run that records nothing.
    """
    if distributed_rank() > 0:
        yield SilentRun()  # type: ignore[misc]
        return
    experiment = spec.tracking.open()
    if parent_run_id is None:
        parent_run_id = multirun_parent(spec.sweep_dir, experiment.uri)
    tags = dict(spec.tags)
    log.info("%s: track=%s (classifier from the %s)", spec.name, tags["track"], tags["classifier_source"])
    run = start_run(
        RunKind.JOB,
        experiment,
        spec.name,
        tags,
        parent_run_id,
        active=True,
        # CPU, memory (and GPU with pynvml) every few seconds, for long runs: tracking.system_metrics
        system_metrics=spec.tracking.system_metrics,
    )
    with closing_run(run):
        run.log_params(flatten_config(spec.config))
        run.log_text(OmegaConf.to_yaml(OmegaConf.create(dict(spec.config))), "config.yaml")
        yield run
