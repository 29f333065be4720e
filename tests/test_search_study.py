"""Optuna studies end to end on tiny demo data: MLflow layout, resume, test rows untouched, crashes,
two processes on one study, pruning of fine-tuning trials, and one-line config errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fid_bench.errors import FidBenchError
from tests.conftest import REPO, TINY

KIND = "fid_bench.kind"


def _client():
    import mlflow

    # the test's own store: the global URI may still name an earlier test's
    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _runs():
    client = _client()
    exps = client.search_experiments()
    return client.search_runs([e.experiment_id for e in exps], max_results=1000)


def _study(workdir: Path):
    """The one study stored in ``workdir``'s default storage."""
    import optuna

    storage = f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}"
    (name,) = [n for n in optuna.get_all_study_names(storage) if ":refit:" not in n]
    return optuna.load_study(study_name=name, storage=storage)


def _layout(runs):
    """(parent, trial runs, refit runs) of the single study in ``runs``."""
    (parent,) = [r for r in runs if r.data.tags.get(KIND) == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [r for r in children if r.data.tags.get("hparams_search") == "trial"]
    refits = [r for r in children if r.data.tags.get("hparams_search") == "refit"]
    assert len(trials) + len(refits) == len(children)
    return parent, trials, refits


def _artifacts(run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in _client().list_artifacts(run_id, path)}


def test_study_logs_parent_trials_refit_and_resumes(compose_cfg, isolated):
    import optuna

    from fid_bench.jobs.search.study import run_study

    cfg = compose_cfg("model=spectrum", "hparams_search=logreg", "hparams_search.n_trials=3")
    best = run_study(cfg)

    study = _study(isolated)
    assert study.study_name.startswith("demo-spectrum-logreg-none-")
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert best == max(t.value for t in trials) == study.best_value

    parent, runs, refits = _layout(_runs())
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(best)
    assert parent.data.metrics["n_trials_complete"] == 3 and parent.data.metrics["n_trials_fail"] == 0
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    assert parent.data.tags["best_params.classifier.estimator.C"] == str(
        study.best_params["classifier.estimator.C"]
    )
    assert {"trials.csv", "best_params.json", "plots"} <= _artifacts(parent.info.run_id)
    plots = _artifacts(parent.info.run_id, "plots")
    assert {"plots/optimization_history.png", "plots/param_importances.png"} <= plots
    # features were extracted once, before the first trial; every trial read them from the cache
    assert parent.data.metrics["setup_cache_hit_ratio"] == 0.0

    by_number = {int(r.data.tags["optuna_trial"]): r for r in runs}
    assert sorted(by_number) == [0, 1, 2]
    for t in trials:
        run = by_number[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
        assert run.data.tags[KIND] == "trial" and run.data.tags["optuna_study"] == study.study_name
        assert run.data.metrics["objective"] == pytest.approx(t.value)
        assert run.data.metrics["val_roc_auc"] == pytest.approx(t.value)
        assert "roc_auc" not in run.data.metrics  # nothing measured on test rows
        assert run.data.metrics["cache_hit_ratio"] == 1.0
        assert run.data.params["classifier.estimator.C"] == str(t.params["classifier.estimator.C"])
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id

    (refit,) = refits
    assert refit.data.tags["optuna_trial"] == str(study.best_trial.number)
    assert refit.data.tags[KIND] == "job"  # a normal, test-evaluated job for the leaderboard
    assert refit.info.run_name == "refit-spectrum-logreg-none"  # never the grid job's name
    assert sorted(r.info.run_name for r in runs) == sorted(f"trial-{t.number}" for t in study.get_trials())
    assert "roc_auc" in refit.data.metrics and refit.outputs.model_outputs  # the refit logs its model
    assert refit.data.params["classifier.estimator.C"] == str(study.best_params["classifier.estimator.C"])
    first_best = study.best_trial.number

    # the same command again: same study, same parent run, three more trials at new points
    run_study(cfg)
    study = _study(isolated)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    old = {t.params["classifier.estimator.C"] for t in trials[:3]}
    assert old.isdisjoint(t.params["classifier.estimator.C"] for t in trials[3:])
    parent2, runs, refits = _layout(_runs())
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert len(runs) == 6 and parent2.data.metrics["n_trials_complete"] == 6
    assert parent2.data.metrics["setup_cache_hit_ratio"] == 1.0
    # a new refit only when the best trial changed
    expected = {first_best, study.best_trial.number}
    assert {int(r.data.tags["optuna_trial"]) for r in refits} == expected and len(refits) == len(expected)


def test_trials_score_validation_rows_and_only_the_refit_sees_test_rows(compose_cfg, monkeypatch):
    from fid_bench.data.splits import make_folds
    from fid_bench.features_track.detector import FeatureDetector
    from fid_bench.jobs.experiment import load_samples
    from fid_bench.jobs.search.study import run_study

    calls: list[tuple[set[int], set[int], set[int]]] = []
    original = FeatureDetector.fit_predict

    def spy(self, job, fold):
        calls.append((set(fold.train.tolist()), set(fold.val.tolist()), set(fold.test.tolist())))
        return original(self, job, fold)

    monkeypatch.setattr(FeatureDetector, "fit_predict", spy)
    cfg = compose_cfg("model=spectrum", "hparams_search=logreg", "hparams_search.n_trials=2")
    run_study(cfg)

    samples = load_samples(cfg)
    (fold,) = make_folds(
        samples.table,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        cv_folds=cfg.cv.folds,
        seed=cfg.seed,
    )
    test_rows = set(fold.test.tolist())
    assert test_rows and len(calls) == 3  # two trials, one refit
    for train, val, held_out in calls[:2]:
        assert held_out == val == set(fold.val.tolist())
        assert not (held_out | train) & test_rows
    train, val, held_out = calls[2]
    assert held_out == test_rows and train == set(fold.train.tolist())


def test_crashing_trials_are_failed_and_the_study_continues(compose_cfg):
    import optuna

    from fid_bench.jobs.search.study import run_study

    cfg = compose_cfg(
        "model=spectrum",
        "hparams_search=logreg",
        "hparams_search.n_trials=6",
        "hparams_search.refit=false",
        "+classifier.estimator.solver=lbfgs",
        "+hparams_search.params.classifier.estimator.solver={type:categorical,choices:[lbfgs,no_such_solver]}",
    )
    from fid_bench.errors import PARTLY_FAILED_EXIT, PartlyFailed

    with pytest.raises(PartlyFailed) as finished:  # the study ran to its end; its failures are told
        run_study(cfg)
    assert finished.value.exit_code == PARTLY_FAILED_EXIT and not math.isnan(finished.value.value)
    report = str(finished.value).splitlines()
    study = _study(Path.cwd())
    states = {t.number: t.state for t in study.get_trials()}
    assert len(states) == 6
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and complete
    assert all(t.params["classifier.estimator.solver"] == "no_such_solver" for t in failed)
    assert all(t.params["classifier.estimator.solver"] == "lbfgs" for t in complete)
    assert all("solver" in t.user_attrs["error"] for t in failed)
    assert report[0].startswith(f"{len(failed)} of 6 trials failed")
    assert [line.split(":")[0].strip() for line in report[1:]] == [f"trial-{t.number}" for t in failed]

    parent, runs, refits = _layout(_runs())
    assert not refits
    by_number = {int(r.data.tags["optuna_trial"]): r for r in runs}
    for t in failed:
        run = by_number[t.number]
        assert (
            run.info.status == "FAILED"
            and run.data.tags["state"] == "FAIL"
            and "solver" in run.data.tags["error"]
        )
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials_fail"] == len(failed)


def test_max_trials_caps_the_study_over_all_processes(compose_cfg):
    from fid_bench.jobs.search.study import run_study

    cfg = compose_cfg(
        "model=spectrum",
        "hparams_search=logreg",
        "hparams_search.n_trials=5",
        "hparams_search.max_trials=2",
        "hparams_search.refit=false",
    )
    run_study(cfg)
    assert len(_study(Path.cwd()).trials) == 2
    run_study(cfg)  # the cap is over the whole study: a rerun adds one trial at most, then stops
    assert len(_study(Path.cwd()).trials) == 3


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["hparams_search=lightgbm", "classifier=rf"], "written for classifier=lightgbm, but classifier=rf"),
        (
            ["hparams_search=logreg", "hparams_search.direction=up"],
            "direction must be maximize, minimize or null",
        ),
        (["hparams_search=logreg", "hparams_search.n_trials=0"], "n_trials must be a positive integer"),
        (["hparams_search=logreg", "hparams_search.storage=sqlite:///:memory:"], "cannot be resumed"),
        (
            ["hparams_search=logreg", "hparams_search.sampler._target_=optuna.samplers.NoSuch"],
            "hparams_search.sampler",
        ),
    ],
)
def test_bad_search_config_is_a_one_line_error(compose_cfg, overrides, fragment):
    from fid_bench.jobs.search.study import run_study

    with pytest.raises(FidBenchError) as err:
        run_study(compose_cfg("model=spectrum", *overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)
    # refused before anything was created
    assert not (Path.cwd() / "mlruns" / "optuna.db").exists() and not _runs()


def test_resuming_with_the_other_direction_is_refused(compose_cfg):
    import optuna

    from fid_bench.jobs.search.study import run_study

    optuna.create_study(storage="sqlite:///mlruns/optuna.db", study_name="s1", direction="minimize")
    cfg = compose_cfg("model=spectrum", "hparams_search=logreg", "hparams_search.study_name=s1")
    with pytest.raises(FidBenchError, match="created to minimize its objective, not maximize"):
        run_study(cfg)
    assert not _runs()  # no run was started


def test_refit_claim_is_granted_once_and_released_after_a_failure(tmp_path):
    import optuna

    from fid_bench.jobs.search.study import claim_refit, release_refit

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    assert claim_refit(storage, "s", 3) is True
    assert claim_refit(storage, "s", 3) is False  # a second worker, or a rerun
    assert claim_refit(storage, "s", 4) is True  # a new best trial is refit again
    release_refit(storage, "s", 3)
    assert claim_refit(storage, "s", 3) is True


def test_storage_urls(tmp_path):
    from fid_bench.jobs.search.storage import display_url, resolve_storage_url

    assert (
        resolve_storage_url("sqlite:///mlruns/optuna.db", tmp_path)
        == f"sqlite:///{tmp_path}/mlruns/optuna.db"
    )
    assert resolve_storage_url("sqlite:////abs/o.db", tmp_path) == "sqlite:////abs/o.db"
    url = "postgresql://optuna:s3cret@db.example:5432/studies"
    assert resolve_storage_url(url, tmp_path) == url
    assert "s3cret" not in display_url(url) and "db.example:5432/studies" in display_url(url)


def _launch(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "fid_bench", *TINY, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_workers_started_together_share_one_study_and_one_parent_run(compose_cfg, isolated):
    """The fast variant of the two-process test below: two threads, each with its own storage."""
    import threading

    import optuna

    from fid_bench.jobs.search.study import run_study

    cfg = compose_cfg("model=spectrum", "hparams_search=logreg", "hparams_search.n_trials=2")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run_study(cfg)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    trials = _study(isolated).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    parent, runs, refits = _layout(_runs())
    assert sorted(int(r.data.tags["optuna_trial"]) for r in runs) == [0, 1, 2, 3]
    refit_trials = [r.data.tags["optuna_trial"] for r in refits]
    assert len(refit_trials) == len(set(refit_trials)) >= 1


@pytest.mark.slow
def test_two_processes_work_on_one_study(isolated):
    import optuna

    args = ["model=spectrum", "hparams_search=logreg", "hparams_search.n_trials=4"]
    procs = [_launch(args, isolated), _launch(args, isolated)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
        assert "Traceback" not in err and "database is locked" not in err
    study = _study(isolated)
    trials = study.get_trials()
    assert len(trials) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(8))
    parent, runs, refits = _layout(_runs())  # one parent: the second process joined the first's
    assert sorted(int(r.data.tags["optuna_trial"]) for r in runs) == list(range(8))
    assert all(r.info.status == "FINISHED" for r in runs)
    # both finished at about the same time: still one refit per best trial, never two
    refit_trials = [r.data.tags["optuna_trial"] for r in refits]
    assert refits and len(refit_trials) == len(set(refit_trials))
    assert all(r.info.status == "FINISHED" for r in refits)
    assert str(study.best_trial.number) in refit_trials


def test_cli_reports_a_search_config_error_in_one_line(isolated):
    proc = _launch(["model=spectrum", "hparams_search=lightgbm", "classifier=knn"], isolated)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "classifier=lightgbm" in lines[0]


@pytest.mark.slow
def test_finetune_study_prunes_poor_trials(compose_cfg, isolated):
    """Real fine-tuning trials on tiny demo images: per-epoch ROC-AUC reaches the pruner."""
    import optuna

    from fid_bench.jobs.search.study import run_study

    cfg = compose_cfg(
        "hparams_search=finetune",
        "hparams_search.n_trials=6",
        "hparams_search.refit=false",
        "hparams_search.pruner.n_startup_trials=2",
        "hparams_search.pruner.n_warmup_steps=0",
        "classifier.max_epochs=4",
        "classifier.early_stopping_patience=null",
        "trainer.num_workers=0",
    )
    run_study(cfg)
    study = _study(isolated)
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in study.get_trials()]
    for t in study.get_trials():
        # every trial reported its epochs 0, 1, ... up to the last or the pruned one
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
        if t.state != optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) == 3
    # pruning saves training: some trial stopped before its last epoch
    assert any(max(t.intermediate_values) < 3 for t in pruned)

    parent, runs, _ = _layout(_runs())
    by_number = {int(r.data.tags["optuna_trial"]): r for r in runs}
    for t in pruned:
        run = by_number[t.number]
        assert run.info.status == "KILLED" and run.data.tags["state"] == "PRUNED"
        assert run.data.tags["pruned_at_step"] == str(max(t.intermediate_values))
    assert parent.data.metrics["n_trials_pruned"] == len(pruned)
    assert "plots/intermediate_values.png" in _artifacts(parent.info.run_id, "plots")
    # trial folders (checkpoints) are removed after each trial
    assert not any(p.is_dir() for p in (isolated / "optuna").iterdir())
