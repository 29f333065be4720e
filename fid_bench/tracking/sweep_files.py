"""The files a Hydra multirun's jobs and its parent run share through the sweep dir.

``mlflow_parent_run.json`` names the parent run (written by ``ParentRunCallback`` in the launching
process, read by every job, whether it runs in that process, in a worker or on another machine);
``<job num>/job_failed.txt`` says that a job failed, also one that failed before its run existed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fid_bench.errors import first_line
from fid_bench.tracking.store import original_cwd

log = logging.getLogger(__name__)

#: written into the sweep dir by ``ParentRunCallback``; read by every job of the multirun
PARENT_RUN_FILE = "mlflow_parent_run.json"
#: a multirun job that failed leaves this file in its own output folder (``<sweep dir>/<job num>/``)
JOB_FAILED_FILE = "job_failed.txt"


def sweep_dir_of(hydra_cfg: Any) -> Path:
    """Absolute sweep dir of a ``hydra`` config node."""
    path = Path(str(hydra_cfg.sweep.dir)).expanduser()
    return path if path.is_absolute() else original_cwd(hydra_cfg) / path


def multirun_sweep_dir() -> Path | None:
    """The sweep dir of the running job when it is a job of a Hydra multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    return sweep_dir_of(hydra) if hydra.mode == RunMode.MULTIRUN else None


def multirun_parent(sweep_dir: Path | None, uri: str) -> str | None:
    """The parent run id recorded in ``sweep_dir`` (None: not a multirun job) for the store at ``uri``."""
    if sweep_dir is None:
        return None
    path = sweep_dir / PARENT_RUN_FILE
    if not path.is_file():
        log.warning("no MLflow parent run recorded at %s; this job's run is not nested", path)
        return None
    try:
        info = json.loads(path.read_text())
        run_id, parent_uri = str(info["run_id"]), str(info["tracking_uri"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("unreadable parent run file %s (%s); this job's run is not nested", path, err)
        return None
    if parent_uri != uri:
        log.warning("parent run is in another tracking store (%s); this job's run is not nested", parent_uri)
        return None
    return run_id


def write_parent_file(sweep_dir: Path, info: Mapping[str, str]) -> Path:
    """Record the parent run for the jobs (atomically: workers may read it at any time)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / PARENT_RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(info), indent=2))
    tmp.replace(path)
    return path


def record_job_failure(message: str) -> None:
    """Leave ``name<TAB>error`` in this multirun job's output folder, for the sweep's final report.

    Also a job that failed before its MLflow run existed is counted so (the run cannot say it)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        hydra = HydraConfig.get()
        folder = Path(str(hydra.runtime.output_dir))
        name = " ".join(str(o) for o in hydra.overrides.task) or f"job {hydra.job.num}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / JOB_FAILED_FILE).write_text(f"{name}\t{' '.join(message.split())}\n")
    except Exception as err:  # noqa: BLE001 - the job's own error is what matters
        log.warning("could not record the job's failure for the sweep's report: %s", first_line(err))


def recorded_failures(sweep_dir: Path) -> list[tuple[str, str]]:
    """``(job, error)`` of every job of the sweep that left ``JOB_FAILED_FILE``, in job order."""

    def order(path: Path) -> tuple[int, str]:
        num = path.parent.name
        return (int(num) if num.isdigit() else 1 << 30, num)

    out = []
    for path in sorted(sweep_dir.glob(f"*/{JOB_FAILED_FILE}"), key=order):
        name, _, error = path.read_text().rstrip("\n").partition("\t")
        out.append((name, error))
    return out
