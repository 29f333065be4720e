"""``run_study(cfg)``: an Optuna study over the config, resumable and shareable between processes.

Flow (``python -m fid_bench hparams_search=NAME``):

1. parse the search space and read the data set once;
2. create or load the study in ``hparams_search.storage`` (resuming is the default: the study name
   is derived from data, model, classifier, balancing and the data fingerprint);
3. open the study's parent MLflow run: the process that creates the study creates it and records
   its id in the study, every later process (a rerun, another worker) reuses it;
4. fill the feature cache once, so trials only read it;
5. run ``n_trials`` trials in this process; each is an ordinary job (``run_job``) with the sampled
   values applied, scored on validation rows (test rows are never predicted), logged as a child
   run; a crash marks the trial FAIL and the study goes on; the pruner may stop a trial early;
6. summarise on the parent run (counts by state, best trial, importances, plots);
7. refit the best configuration on the training rows and evaluate it once on the test rows, as a
   child run tagged ``hparams_search=refit`` (skipped when that trial was already refit).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from fid_bench.contract import Job
from fid_bench.errors import FidBenchError, PartlyFailed, failures_report, first_line
from fid_bench.evaluation import metric_registry
from fid_bench.jobs.experiment import load_samples, output_dir, run_job
from fid_bench.jobs.job_spec import JobSpec
from fid_bench.jobs.search.space import Param, apply_params, parse_space
from fid_bench.jobs.search.storage import display_url, open_storage, resolve_storage_url
from fid_bench.jobs.search.study_report import (
    ProgressCallback,
    log_parent_metrics,
    set_parent_tags,
    summarize,
)
from fid_bench.jobs.search.trial_logger import TrialLogger, pruned_in_chain
from fid_bench.tracking.kinds import KIND_TAG, RunKind
from fid_bench.tracking.run_factory import start_run
from fid_bench.tracking.run_tags import common_tags, group_names, run_name_of
from fid_bench.tracking.store import TrackingSettings, original_cwd
from fid_bench.tracking.sweep_files import multirun_parent, multirun_sweep_dir
from fid_bench.tracking.sweep_report import log_sweep_report

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

    from fid_bench.data.samples import Samples

log = logging.getLogger(__name__)

#: study user attribute holding the parent MLflow run ({"run_id", "tracking_uri"})
PARENT_ATTR = "mlflow_parent_run"
#: how long a process that did not create the study waits for the creator to record the parent run
PARENT_WAIT_S = 60.0
#: states counted by ``hparams_search.max_trials``
CAPPED_STATES = ("COMPLETE", "PRUNED")


# --------------------------------------------------------------------------- config


def check_search_config(cfg: DictConfig) -> DictConfig:
    """The ``hparams_search`` node after checks that need no data; one-line errors."""
    hs = cfg.hparams_search
    expected = hs.get("classifier")
    actual = OmegaConf.select(cfg, "classifier.name", default=None)
    if expected and actual != expected:
        raise FidBenchError(
            f"this search space is written for classifier={expected}, but classifier={actual} was chosen; "
            f"use the hparams_search file for {actual} (or drop the classifier override)"
        )
    if hs.get("direction") is not None and hs.direction not in ("maximize", "minimize"):
        raise FidBenchError(
            f"hparams_search.direction must be maximize, minimize or null, got {hs.direction!r}"
        )
    for key in ("n_trials", "max_trials"):
        value = hs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise FidBenchError(f"hparams_search.{key} must be a positive integer or null, got {value!r}")
    timeout = hs.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise FidBenchError(f"hparams_search.timeout must be positive seconds or null, got {timeout!r}")
    if hs.get("promote"):
        from fid_bench.tracking.model_registry import check_name

        check_name(str(hs.promote), "hparams_search.promote")
        if not hs.get("refit", True):
            raise FidBenchError("hparams_search.promote registers the refit run's model; it needs refit=true")
    if not str(hs.get("metric") or ""):
        raise FidBenchError("hparams_search.metric is empty; name the metric to optimise, e.g. roc_auc")
    # build sampler and pruner once now, so a typo fails before a study or run is created
    make_sampler(hs, 0)
    make_pruner(hs)
    return hs


def default_study_name(cfg: DictConfig, samples: Samples) -> str:
    """``<data>-<model>-<classifier>-<balance>-<fingerprint>``: the same command on the same data resumes."""
    names = group_names(cfg)
    return "-".join(
        [names["data"], names["model"], names["classifier"], names["balance"], samples.fingerprint()[:8]]
    )


def trial_config(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """The job config of one trial: sampled values applied, the study's metric, no model logging."""
    out = apply_params(cfg, values)
    with open_dict(out):
        out.optimized_metric = cfg.hparams_search.metric
        # a trial's model is never used again (the refit logs the one that counts)
        out.tracking.log_model = False
    return out


def _reuses_samples(space: list[Param]) -> bool:
    # a searched data setting could change what is read, so such trials read the data themselves
    return not any(p.key.startswith("data.") for p in space)


# --------------------------------------------------------------------------- study and parent run


def _instantiate(node: Any, what: str, **kwargs: Any) -> Any:
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except Exception as err:  # noqa: BLE001 - a bad _target_ or argument is a config error
        cause = err.__cause__ or err
        raise FidBenchError(f"hparams_search.{what}: cannot build it: {first_line(cause)}") from None


def make_sampler(hs: DictConfig, n_existing: int) -> optuna.samplers.BaseSampler:
    """The configured sampler; a seed is offset by the trials already stored (see conf/_base.yaml)."""
    node = hs.sampler
    seed = node.get("seed") if node is not None else None
    if seed is not None:
        return _instantiate(node, "sampler", seed=int(seed) + n_existing)
    return _instantiate(node, "sampler")


def make_pruner(hs: DictConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; ``pruner: null`` never prunes."""
    import optuna

    return _instantiate(hs.pruner, "pruner") if hs.get("pruner") is not None else optuna.pruners.NopPruner()


def objective_direction(hs: DictConfig) -> str:
    """``hparams_search.direction``, or the metric's direction from the registry when it is null."""
    explicit = hs.get("direction")
    return str(explicit) if explicit is not None else metric_registry.direction(str(hs.metric))


def open_study(cfg: DictConfig, storage: Any, study_name: str) -> tuple[optuna.Study, bool]:
    """Create the study or load it; returns (study, created_by_this_process).

    Creation goes through the storage's unique study name, so of several processes starting at
    once exactly one creates it (and its parent run); the others load it.
    """
    import optuna

    hs = cfg.hparams_search
    direction = objective_direction(hs)
    try:
        optuna.create_study(storage=storage, study_name=study_name, direction=direction)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    probe = optuna.load_study(study_name=study_name, storage=storage)
    stored = probe.direction.name.lower()
    if stored != direction:
        raise FidBenchError(
            f"study {study_name!r} was created to {stored} its objective, not {direction}; "
            "set hparams_search.study_name to start a new study"
        )
    n_existing = len(probe.get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(hs, n_existing),
        pruner=make_pruner(hs),
    )
    return study, created


def _run_alive(client: MlflowClient, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - missing or unreadable: not usable
        return False


def parent_run(
    cfg: DictConfig, study: optuna.Study, created: bool, storage_text: str, space: list[Param]
) -> tuple[MlflowClient, str, str]:
    """(client, parent run id, experiment id) of the study's MLflow run, created on first use."""
    experiment = TrackingSettings.of_config(cfg.get("tracking"), original_cwd()).open()
    client, experiment_id, uri = experiment
    info = study.user_attrs.get(PARENT_ATTR)
    if not created and info is None:
        # the creating process records the parent run right after creating the study
        deadline = time.monotonic() + PARENT_WAIT_S
        while info is None and time.monotonic() < deadline:
            time.sleep(0.5)
            info = study.user_attrs.get(PARENT_ATTR)
    if info and info.get("tracking_uri") == uri and _run_alive(client, info["run_id"]):
        client.update_run(info["run_id"], status="RUNNING")
        log.info("study %s: resuming, parent MLflow run %s", study.study_name, info["run_id"])
        return client, info["run_id"], experiment_id
    if info:
        log.warning(
            "study %s: its MLflow run %s is not in %s; starting a new one",
            study.study_name,
            info["run_id"],
            uri,
        )

    hs = cfg.hparams_search
    names = group_names(cfg)
    tags = {
        **names,
        **common_tags(),
        "optuna_study": study.study_name,
        "optuna_storage": storage_text,
    }
    # a multirun of studies: nest each study under the sweep's run
    outer = multirun_parent(multirun_sweep_dir(), uri)
    run_id = start_run(RunKind.STUDY, experiment, f"study-{study.study_name}", tags, outer).run_id
    from mlflow.entities import Param as MlflowParam

    params = {
        "study_name": study.study_name,
        "direction": objective_direction(hs),
        "metric": f"val_{hs.metric}",
        "sampler": OmegaConf.select(hs, "sampler._target_", default="null"),
        "pruner": OmegaConf.select(hs, "pruner._target_", default="null"),
        **{f"space.{p.key}": _space_text(p) for p in space},
    }
    client.log_batch(run_id, params=[MlflowParam(k[:250], str(v)[:6000]) for k, v in params.items()])
    study.set_user_attr(PARENT_ATTR, {"run_id": run_id, "tracking_uri": uri})
    log.info("study %s: parent MLflow run %s in %s", study.study_name, run_id, uri)
    return client, run_id, experiment_id


def _space_text(p: Param) -> str:
    if p.type == "categorical":
        return f"categorical{list(p.choices)}"
    scale = ", log" if p.log else (f", step={p.step}" if p.step else "")
    return f"{p.type}[{p.low}, {p.high}{scale}]"


# --------------------------------------------------------------------------- trials


def warm_cache(cfg: DictConfig, samples: Samples) -> dict[str, float]:
    """Run the detector's shared setup once (feature extraction into the cache) before any trial."""
    start = time.perf_counter()
    spec = JobSpec.of_config(cfg)
    spec.detector.setup(
        Job(samples=samples, balance=spec.balance, cache_dir=spec.cache_dir, output_dir=output_dir())
    )
    stats = {f"setup_{k}": float(v) for k, v in spec.detector.extra_metrics().items()}
    stats["setup_seconds"] = time.perf_counter() - start
    return stats


class Objective:
    """One trial = one validation-scored job with the sampled values (see the module docstring)."""

    def __init__(
        self,
        cfg: DictConfig,
        space: list[Param],
        samples: Samples | None,
        parent_run_id: str,
        study_name: str,
    ) -> None:
        self.cfg = cfg
        self.space = space
        self.samples = samples
        self.parent_run_id = parent_run_id
        self.study_name = study_name
        self.report_key = f"val_{cfg.hparams_search.metric}"

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = {p.key: p.suggest(trial) for p in self.space}
        cfg = trial_config(self.cfg, values)
        logger = TrialLogger(
            trial,
            self.report_key,
            tags={
                KIND_TAG: RunKind.TRIAL.value,
                "hparams_search": "trial",
                "optuna_study": self.study_name,
                "optuna_trial": str(trial.number),
                "mlflow.runName": f"trial-{trial.number}",
            },
        )
        scratch = output_dir() / "optuna"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            # a trial's files (checkpoints) are never used again: a private folder, removed after
            with tempfile.TemporaryDirectory(prefix=f"trial{trial.number}-", dir=scratch) as job_dir:
                value = run_job(
                    cfg,
                    holdout="val",
                    parent_run_id=self.parent_run_id,
                    samples=self.samples,
                    on_run=logger.attach,
                    job_dir=Path(job_dir),
                )
        except BaseException as err:
            if logger.run_id:
                trial.set_user_attr("mlflow_run_id", logger.run_id)
            if pruned_in_chain(err):
                logger.mark_pruned()
                raise optuna.TrialPruned(str(err)) from None
            logger.set_state("FAIL")
            trial.set_user_attr("error", first_line(err))
            if isinstance(err, FidBenchError):
                # a user-level error: one line is the whole story, no traceback
                log.warning("trial %d failed: %s", trial.number, err)
                return math.nan
            raise
        trial.set_user_attr("mlflow_run_id", logger.run_id)
        logger.set_state("COMPLETE" if math.isfinite(value) else "FAIL")
        # the value Optuna optimises, under one name for every track (a fine-tuning run's
        # val_roc_auc history ends at the last epoch, the objective is the best checkpoint's)
        logger.log_metrics({"objective": value})
        return value


# --------------------------------------------------------------------------- refit


REFIT_CLAIM = "{study}:refit:{trial}"


def claim_refit(storage: Any, study_name: str, trial_number: int) -> bool:
    """True for exactly one process per (study, best trial), on any number of machines.

    The claim is an empty study named ``<study>:refit:<trial>``: study names are unique in the
    storage, so of several workers finishing at once only one creates it and refits.
    """
    import optuna

    try:
        optuna.create_study(
            storage=storage, study_name=REFIT_CLAIM.format(study=study_name, trial=trial_number)
        )
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def release_refit(storage: Any, study_name: str, trial_number: int) -> None:
    """Drop a claim whose refit failed, so that the next run tries again."""
    import optuna

    try:
        optuna.delete_study(
            study_name=REFIT_CLAIM.format(study=study_name, trial=trial_number), storage=storage
        )
    except Exception as err:  # noqa: BLE001 - never hide the refit's own error
        log.warning("could not release the refit claim of trial %d: %s", trial_number, first_line(err))


def refit_best(
    cfg: DictConfig,
    study: optuna.Study,
    storage: Any,
    client: MlflowClient,
    parent_run_id: str,
    samples: Samples | None,
) -> float | None:
    """Fit the best trial's configuration on the training rows and evaluate once on the test rows.

    Returns the test metric, or None when there is nothing to refit or another process (or an
    earlier run) already refit this trial.
    """
    try:
        best = study.best_trial
    except ValueError:
        log.warning("study %s: no complete trial, nothing to refit", study.study_name)
        return None
    if not claim_refit(storage, study.study_name, best.number):
        log.info("study %s: trial %d is already refit (or being refit)", study.study_name, best.number)
        return None
    metric = str(cfg.hparams_search.metric)
    known = {p.key for p in parse_space(cfg)}
    values = {k: v for k, v in best.params.items() if k in known}
    if len(values) < len(best.params):
        log.warning(
            "refit: parameters no longer in the space are left at their config values: %s",
            sorted(set(best.params) - known),
        )
    refit_cfg = apply_params(cfg, values)
    with open_dict(refit_cfg):
        refit_cfg.optimized_metric = metric

    refit_runs: list[str] = []

    def tag(run: Any) -> Any:
        refit_runs.append(run.run_id)
        run.set_tags(
            {
                "mlflow.runName": run_name_of(group_names(refit_cfg), "refit"),
                "hparams_search": "refit",
                "optuna_study": study.study_name,
                "optuna_trial": str(best.number),
                "best_val_value": str(best.value),
            }
        )
        return run

    log.info("study %s: refitting trial %d %s on the training rows", study.study_name, best.number, values)
    job_dir = output_dir() / "optuna" / f"refit-trial{best.number}"
    try:
        value = run_job(
            refit_cfg,
            holdout="test",
            parent_run_id=parent_run_id,
            samples=samples,
            on_run=tag,
            job_dir=job_dir,
        )
    except BaseException:
        release_refit(storage, study.study_name, best.number)
        raise
    log_parent_metrics(client, parent_run_id, {f"refit_{metric}": value})
    set_parent_tags(client, parent_run_id, {"refit_trial": best.number})
    name = cfg.hparams_search.get("promote")
    if name and refit_runs:
        promote_refit(client, refit_runs[-1], str(name), parent_run_id)
    return value


def promote_refit(client: MlflowClient, run_id: str, name: str, parent_run_id: str) -> None:
    """``hparams_search.promote=NAME``: the refit's model becomes NAME's champion version."""
    from fid_bench.jobs.search.study_report import set_parent_tags
    from fid_bench.tracking.model_registry import promote_run

    promotion = promote_run(client, client.get_run(run_id), name)
    set_parent_tags(client, parent_run_id, {"promoted": f"{promotion.name}/{promotion.version}"})
    log.info("refit run %s promoted: %s (version %s)", run_id, promotion.uri, promotion.version)


# --------------------------------------------------------------------------- entry point


def run_study(cfg: DictConfig) -> float:
    """Run (or resume) the configured study; return the best validation value found so far."""
    import optuna

    hs = check_search_config(cfg)
    space = parse_space(cfg)
    storage_url = resolve_storage_url(str(hs.storage), original_cwd())  # checked before reading data
    samples = load_samples(cfg)
    study_name = str(hs.study_name) if hs.get("study_name") else default_study_name(cfg, samples)
    storage = open_storage(storage_url, original_cwd(), heartbeat_interval=hs.get("heartbeat_interval"))
    storage_text = display_url(storage.url)
    study, created = open_study(cfg, storage, study_name)
    fingerprint = samples.fingerprint()
    if created:
        study.set_user_attr("data_fingerprint", fingerprint)
    elif study.user_attrs.get("data_fingerprint") not in (None, fingerprint):
        log.warning(
            "study %s was started on other data (fingerprint %s, now %s); its trials are not comparable",
            study_name,
            study.user_attrs["data_fingerprint"],
            fingerprint,
        )
    client, parent_id, _ = parent_run(cfg, study, created, storage_text, space)
    status = "FAILED"
    try:
        n_before = len(study.get_trials(deepcopy=False))
        log.info(
            "study %s in %s: %d trials stored, running %s more",
            study_name,
            storage_text,
            n_before,
            hs.n_trials,
        )
        log_parent_metrics(client, parent_id, warm_cache(cfg, samples), step=n_before)
        callbacks: list[Any] = [ProgressCallback(client, parent_id)]
        if hs.get("max_trials"):
            states = tuple(optuna.trial.TrialState[s] for s in CAPPED_STATES)
            callbacks.append(optuna.study.MaxTrialsCallback(int(hs.max_trials), states=states))
        objective = Objective(cfg, space, samples if _reuses_samples(space) else None, parent_id, study_name)
        study.optimize(
            objective,
            n_trials=hs.n_trials,
            timeout=hs.get("timeout"),
            catch=(Exception,),
            callbacks=callbacks,
        )
        summary = summarize(study, client, parent_id, str(hs.metric))
        log.info(
            "study %s: %d trials (%d complete, %d pruned, %d failed); best %s=%s in trial %s",
            study_name,
            summary["n_trials"],
            summary["n_trials_complete"],
            summary["n_trials_pruned"],
            summary["n_trials_fail"],
            f"val_{hs.metric}",
            summary.get("best_value"),
            summary.get("best_trial"),
        )
        if "best_value" not in summary:
            raise FidBenchError(
                f"study {study_name}: no trial completed; see the failed trials' 'error' tags in MLflow"
            )
        if hs.get("refit", True):
            refit_best(cfg, study, storage, client, parent_id, samples if _reuses_samples(space) else None)
        status = "FINISHED"
        failed = [
            (f"trial-{t.number}", str(t.user_attrs.get("error") or "failed"))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            if t.number >= n_before
        ]
        log_sweep_report(client.tracking_uri, parent_id, metric=str(hs.metric), failures=failed)
        if failed:
            ran = sum(1 for t in study.get_trials(deepcopy=False) if t.number >= n_before)
            raise PartlyFailed(failures_report("trials", failed, ran), float(summary["best_value"]))
        return float(summary["best_value"])
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except PartlyFailed:
        raise  # the study itself finished; its failed trials are told by the caller
    except BaseException as err:
        try:
            client.set_tag(parent_id, "error", first_line(err))
        except Exception:  # noqa: BLE001 - never hide the study's own error
            pass
        raise
    finally:
        try:
            client.set_terminated(parent_id, status)
        except Exception as err:  # noqa: BLE001 - never hide the study's own error
            log.error("could not close the study's MLflow run %s: %s", parent_id, first_line(err))
