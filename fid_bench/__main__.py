"""``python -m fid_bench``: the Hydra app. Compose the config, run one job, return its metric.

With ``hparams_search=NAME`` the app runs an Optuna study instead (``fid_bench.search.study``) and
returns the best validation value.
"""

from __future__ import annotations

import logging
import math
import signal
import sys

import hydra
from omegaconf import DictConfig

from fid_bench import signals
from fid_bench.config import require_set
from fid_bench.errors import user_error
from fid_bench.experiment import run_job
from fid_bench.search.study import run_study

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
        if cfg.get("hparams_search"):
            return run_study(cfg)
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
        if problem is not None:
            message = " ".join(str(problem).split())
            if not multirun:
                raise SystemExit(f"error: {message}") from None
            log.error("job failed: %s", message)
        elif multirun and isinstance(err, Exception):  # a failing job must not stop the sweep
            log.exception("job failed: %s: %s", type(err).__name__, err)
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
