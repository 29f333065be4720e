"""The logger a trial's detector writes to: MLflow as usual, plus intermediate values for the pruner.

A detector that trains in epochs logs ``val_<metric>`` with ``step=epoch`` (the fine-tuning track
does). ``TrialLogger`` forwards every call to the trial's MLflow run and reports that metric to the
Optuna trial; when the pruner says so it raises ``optuna.TrialPruned``, which travels out of the
training loop (Lightning re-raises exceptions from hooks) and out of ``run_job``.

Pruned runs end with MLflow status KILLED and tag ``state=PRUNED`` (``mark_pruned``): KILLED tells
them from crashes (FAILED) in the run list, the tag tells them from a user's Ctrl-C.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fid_bench.errors import first_line

if TYPE_CHECKING:
    import optuna

    from fid_bench.tracking.logged_run import TrackedRun

log = logging.getLogger(__name__)


def pruned_in_chain(err: BaseException | None) -> bool:
    """True when ``err`` is, or was caused by, ``optuna.TrialPruned`` (a detector may wrap errors)."""
    import optuna

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, optuna.TrialPruned):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


class TrialLogger:
    """Wraps a ``TrackedRun`` for one trial (see the module docstring)."""

    def __init__(self, trial: optuna.Trial, report_key: str | None, tags: Mapping[str, str]) -> None:
        self.trial = trial
        self.report_key = report_key
        self.tags = dict(tags)
        self.run: TrackedRun | None = None
        self.last_step: int | None = None

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    def attach(self, run: TrackedRun) -> TrialLogger:
        """``run_job``'s ``on_run`` hook: remember the run, tag it, and stand in for it."""
        self.run = run
        run.set_tags(self.tags)
        return self

    # -- RunLogger
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        import optuna

        assert self.run is not None, "attach() first"
        self.run.log_metrics(metrics, step=step)
        if step is None or self.report_key is None or self.report_key not in metrics:
            return
        value = float(metrics[self.report_key])
        self.trial.report(value, int(step))
        self.last_step = int(step)
        if self.trial.should_prune():
            shown = "nan" if math.isnan(value) else f"{value:.4f}"
            raise optuna.TrialPruned(f"pruned at step {step} with {self.report_key}={shown}")

    def log_params(self, params: Mapping[str, Any]) -> None:
        assert self.run is not None, "attach() first"
        self.run.log_params(params)

    def __getattr__(self, name: str) -> Any:
        # anything else a detector uses (artifacts, tags) goes straight to the run
        run = self.__dict__.get("run")
        if run is None:
            raise AttributeError(name)
        return getattr(run, name)

    # -- the run's final state
    def set_state(self, state: str, **extra: Any) -> None:
        """Tag the run with the trial's final state (COMPLETE, PRUNED or FAIL)."""
        if self.run is None:
            return
        try:
            self.run.set_tags({"state": state, **{k: str(v) for k, v in extra.items()}})
        except Exception as err:  # noqa: BLE001 - bookkeeping must not change the trial's outcome
            log.warning("could not tag MLflow run %s: %s", self.run_id, first_line(err))

    def mark_pruned(self) -> None:
        """The run was closed as FAILED by ``closing_run``; record it as pruned instead."""
        if self.run is None:
            return
        self.set_state("PRUNED", pruned_at_step=self.last_step)
        try:
            self.run.client.set_terminated(self.run.run_id, "KILLED")
        except Exception as err:  # noqa: BLE001 - bookkeeping must not change the trial's outcome
            log.warning("could not mark MLflow run %s as pruned: %s", self.run_id, first_line(err))
