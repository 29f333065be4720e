"""The study summary: counts by state, plots for small and larger studies, storage options."""

from __future__ import annotations

import math

import pytest


def _study(values: list[float | None], pruned: int = 0):
    """An in-memory study: one COMPLETE trial per number, FAIL for None, then ``pruned`` PRUNED."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for i, value in enumerate(values):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("k", 1, 9)
        trial.report(0.1 * i, 0)
        study.tell(trial, value, state=optuna.trial.TrialState.FAIL if value is None else None)
    for _ in range(pruned):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study


def test_state_counts():
    from fid_bench.jobs.search.study_report import state_counts

    counts = state_counts(_study([0.5, None, 0.7], pruned=2))
    assert counts["n_trials"] == 5
    assert (counts["n_trials_complete"], counts["n_trials_fail"], counts["n_trials_pruned"]) == (2, 1, 2)
    assert counts["n_trials_running"] == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([None], {"intermediate_values.png"}),  # no complete trial: no history, no importance
        ([0.6], {"optimization_history.png", "intermediate_values.png"}),
        (
            [0.1 * i for i in range(8)],
            {"optimization_history.png", "param_importances.png", "intermediate_values.png"},
        ),
    ],
)
def test_plots_fit_the_study_size_and_leave_matplotlib_settings_alone(tmp_path, values, expected):
    import matplotlib

    from fid_bench.jobs.search.study_report import write_plots

    before = dict(matplotlib.rcParams)
    files, importances = write_plots(_study(values), tmp_path / "plots")
    assert {f.name for f in files} == expected
    assert all(f.stat().st_size > 1000 for f in files)
    assert dict(matplotlib.rcParams) == before  # optuna's style switch does not leak
    if "param_importances.png" in expected:
        assert set(importances) == {"x", "k"} and math.isclose(sum(importances.values()), 1.0)
    else:
        assert importances == {}


def test_heartbeat_setting_reaches_the_storage(tmp_path):
    from fid_bench.jobs.search.storage import open_storage

    storage = open_storage("sqlite:///db/optuna.db", tmp_path, heartbeat_interval=30)
    assert storage.heartbeat_interval == 30 and storage.grace_period == 60
    assert (tmp_path / "db" / "optuna.db").is_file()
    assert open_storage("sqlite:///db/optuna.db", tmp_path).heartbeat_interval is None
