"""What the study's parent MLflow run shows: progress per trial, then a summary with plots."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fid_bench.errors import first_line

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


def log_parent_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
    if entries:
        client.log_batch(run_id, metrics=entries)


def set_parent_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
    if items:
        client.log_batch(run_id, tags=items)


class ProgressCallback:
    """A study callback: after each trial, its value and the best value so far on the parent run.

    Both are logged with ``step = trial number``, so MLflow draws the optimisation history live.
    """

    def __init__(self, client: MlflowClient, parent_run_id: str) -> None:
        self.client = client
        self.parent_run_id = parent_run_id

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        metrics: dict[str, float] = {}
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            metrics["trial_value"] = trial.value
        try:
            metrics["best_value"] = study.best_value
        except ValueError:  # no complete trial yet
            pass
        try:
            log_parent_metrics(self.client, self.parent_run_id, metrics, step=trial.number)
        except Exception as err:  # noqa: BLE001 - progress display must not stop the study
            log.warning("could not log progress to the study run: %s", first_line(err))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """``n_trials`` and ``n_trials_<state>`` (complete, pruned, fail, running, waiting)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {"n_trials": len(trials)}
    for state in TrialState:
        counts[f"n_trials_{state.name.lower()}"] = sum(t.state == state for t in trials)
    return counts


def _save_plot(draw: Any, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    # optuna's plots switch the global matplotlib style; keep that from leaking into later plots
    with matplotlib.rc_context(), warnings.catch_warnings():
        # optuna's matplotlib plots are marked experimental; the warning is noise here
        warnings.simplefilter("ignore")
        result = draw()
        ax = result.flat[0] if hasattr(result, "flat") else result
        fig = ax.figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def write_plots(study: optuna.Study, out: Path) -> tuple[list[Path], dict[str, float]]:
    """Optimisation history, parameter importances (when defined) and intermediate values.

    Returns the files written and the importances. Importance needs at least two complete trials
    with varying parameters; with fewer it is skipped with a note in the log.
    """
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    importances: dict[str, float] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def attempt(name: str, draw: Any) -> None:
        path = out / name
        try:
            _save_plot(draw, path)
            written.append(path)
        except Exception as err:  # noqa: BLE001 - a missing plot must not fail the study
            log.warning("plot %s not drawn: %s", name, first_line(err))

    if complete:
        attempt("optimization_history.png", lambda: ovm.plot_optimization_history(study))
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = dict(optuna.importance.get_param_importances(study))
        except Exception as err:  # noqa: BLE001 - e.g. every trial had the same parameters
            log.info("parameter importance not computed: %s", first_line(err))
        if importances:
            attempt("param_importances.png", lambda: ovm.plot_param_importances(study))
    else:
        log.info("parameter importance needs two complete trials; %d so far", len(complete))
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        attempt("intermediate_values.png", lambda: ovm.plot_intermediate_values(study))
    return written, importances


def summarize(study: optuna.Study, client: MlflowClient, parent_run_id: str, metric: str) -> dict[str, Any]:
    """Log counts by state, the best trial, importances, ``trials.csv`` and plots to the parent run."""
    counts = state_counts(study)
    summary: dict[str, Any] = dict(counts)
    metrics: dict[str, float] = {k: float(v) for k, v in counts.items()}
    tags: dict[str, Any] = {}
    try:
        best = study.best_trial
    except ValueError:
        best = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if best is not None:
            summary.update(best_value=best.value, best_trial=best.number, best_params=dict(best.params))
            metrics.update({"best_value": best.value, f"best_val_{metric}": best.value})
            metrics["best_trial"] = float(best.number)
            # params are immutable in MLflow and the best trial changes as the study grows: tags
            tags.update({f"best_params.{k}": v for k, v in best.params.items()})
            tags["best_trial"] = best.number
            (tmp_path / "best_params.json").write_text(
                json.dumps({"trial": best.number, "value": best.value, "params": best.params}, indent=2)
            )
        try:
            study.trials_dataframe().to_csv(tmp_path / "trials.csv", index=False)
        except Exception as err:  # noqa: BLE001 - an odd trial must not lose the rest of the summary
            log.warning("trials.csv not written: %s", first_line(err))
        plots, importances = write_plots(study, tmp_path / "plots")
        metrics.update(
            {f"importance.{k}": v for k, v in importances.items() if v is not None and not math.isnan(v)}
        )
        summary["importances"] = importances
        log_parent_metrics(client, parent_run_id, metrics, step=len(study.get_trials(deepcopy=False)))
        set_parent_tags(client, parent_run_id, tags)
        for name in ("best_params.json", "trials.csv"):
            if (tmp_path / name).exists():
                client.log_artifact(parent_run_id, str(tmp_path / name))
        if plots:
            client.log_artifacts(parent_run_id, str(tmp_path / "plots"), "plots")
    return summary
