"""``python -m fid_bench``: the Hydra app. Compose the config, run one job, return its metric.

With ``hparams_search=NAME`` the app runs an Optuna study instead (``fid_bench.jobs.search.study``) and
returns the best validation value.

Exit codes: 0 done; 1 a job's user error (one line) or a single job that failed; 2 a sweep whose
overrides or data roots are wrong (checked before anything runs); 3 (``errors.PARTLY_FAILED_EXIT``)
a sweep or study that ran to its end with failed jobs or trials, listed one per line at the end;
128 + N interrupted by signal N (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import logging
import math
import signal
import sys

from fid_bench import installed

installed.require("python -m fid_bench")  # one line naming `make install`, not a ModuleNotFoundError

import hydra  # noqa: E402 - after the check above
from omegaconf import DictConfig  # noqa: E402

from fid_bench import signals  # noqa: E402
from fid_bench.config import require_data_root, require_set  # noqa: E402
from fid_bench.errors import PartlyFailed, first_line, user_error  # noqa: E402
from fid_bench.features.shard import shard_requested  # noqa: E402
from fid_bench.jobs.experiment import run_job  # noqa: E402
from fid_bench.jobs.search.study import run_study  # noqa: E402
from fid_bench.jobs.shard_job import run_shard_job  # noqa: E402
from fid_bench.tracking.sweep_files import record_job_failure  # noqa: E402

log = logging.getLogger("fid_bench")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    # SIGTERM (SLURM, Kubernetes, timeout) unwinds the job like Ctrl-C: caches flush, run KILLED
    signals.install()
    try:
        require_set(cfg)  # e.g. data.root: one line before any run is created
        require_data_root(cfg)  # a mistyped root creates no experiment
        if cfg.get("hparams_search"):
            return run_study(cfg)
        if shard_requested(cfg):  # one shard of a split extraction: no model, no metric
            return run_shard_job(cfg)
        return run_job(cfg)
    except BaseException as err:
        signum = signals.received()
        # Lightning turns an interrupt during fit into SystemExit(1): the signal tells them apart
        if isinstance(err, KeyboardInterrupt) or (signum is not None and isinstance(err, SystemExit)):
            name = signals.signal_name(signum)
            print(
                f"error: interrupted by {name}; the job's MLflow run (if started) is marked KILLED",
                file=sys.stderr,
                flush=True,
            )
            # the whole sweep stops too: the user (or the scheduler) asked for it
            raise SystemExit(128 + (signum or signal.SIGINT)) from None
        problem = user_error(err)  # bad input or config, possibly wrapped by hydra.utils.instantiate
        if isinstance(problem, PartlyFailed):
            # a study that finished with failed trials: its result stands, the failures are told
            if not multirun:
                print(str(problem), file=sys.stderr, flush=True)
                raise SystemExit(problem.exit_code) from None
            log.warning("%s", problem)
            return problem.value
        if problem is not None:
            message = " ".join(str(problem).split())
            if not multirun:
                raise SystemExit(f"error: {message}") from None
            log.error("job failed: %s", message)
            record_job_failure(message)
        elif multirun and isinstance(err, Exception):  # a failing job must not stop the sweep
            log.exception("job failed: %s: %s", type(err).__name__, err)
            record_job_failure(first_line(err))
        else:
            raise
    # the run was already marked FAILED; NaN tells a sweeper this point has no value
    return math.nan


def preflight(argv: list[str]) -> None:
    """Stop before any run when a named model's pretrained weights cannot be had offline (one line each)."""
    from fid_bench.preflight import missing_weights

    lines = missing_weights(argv)
    if lines:
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    preflight(sys.argv[1:])
    main()
