"""``python -m fid_bench``: the Hydra app. Compose the config, run one job, return its metric.

With ``hparams_search=NAME`` the app runs an Optuna study instead (``fid_bench.search.study``) and
returns the best validation value.
"""

from __future__ import annotations

import logging
import math

import hydra
from omegaconf import DictConfig

from fid_bench.errors import FidBenchError
from fid_bench.experiment import run_job
from fid_bench.search.study import run_study

log = logging.getLogger("fid_bench")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if cfg.get("hparams_search"):
            return run_study(cfg)
        return run_job(cfg)
    except FidBenchError as err:
        # bad input or config: one line, no traceback
        if not multirun:
            raise SystemExit(f"error: {err}") from None
        log.error("job failed: %s", err)
    except Exception as err:  # noqa: BLE001 - a failing job must not stop the sweep
        if not multirun:
            raise
        log.exception("job failed: %s: %s", type(err).__name__, err)
    # the run was already marked FAILED; NaN tells a sweeper this point has no value
    return math.nan


if __name__ == "__main__":
    main()
