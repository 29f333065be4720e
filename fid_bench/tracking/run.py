"""``tracked_run(cfg)``: the MLflow run every job goes through.

On entry: connect to ``cfg.tracking.uri``, make sure the experiment exists, start a run (nested
under the multirun's parent run when there is one), log the flattened config as params, the
identifying tags and the resolved config YAML. On exit: FINISHED, or FAILED with the error (tag
``error`` and ``traceback.txt``) and the exception re-raised, or KILLED on Ctrl-C. The run is
always ended.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

import fid_bench
from fid_bench import __version__, signals
from fid_bench.data.samples import LABEL_NAMES
from fid_bench.errors import FidBenchError, first_line, user_error
from fid_bench.evaluation import plots
from fid_bench.tracking.kinds import KIND_TAG, RunKind
from fid_bench.tracking.store import DEFAULT_TRACKING_URI, open_experiment, original_cwd

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from fid_bench.data.samples import Samples
    from fid_bench.detector import Predictor
    from fid_bench.tracking.lineage import DatasetPart

log = logging.getLogger(__name__)

#: written into the sweep dir by ``ParentRunCallback``; read by every job of the multirun
PARENT_RUN_FILE = "mlflow_parent_run.json"

# MLflow's limits (mlflow.utils.validation), repeated so that importing this module stays cheap
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

GROUPS = ("model", "classifier", "balance", "data")
#: the detector of the fine-tuning track (every other classifier runs on frozen features)
FINETUNE_TARGET = "fid_bench.finetune.detector.FinetuneDetector"


# --------------------------------------------------------------------------- config -> params/tags


def _param_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_key(key: str) -> str:
    # MLflow keys allow word characters, "." "-" " " "/" ":" only
    return _truncate(re.sub(r"[^\w.\- /:]", "_", key), MAX_KEY_LENGTH)


def resolved_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The job's config as plain containers, interpolations resolved, without the ``hydra`` node."""
    if isinstance(cfg, DictConfig):
        # leave the hydra node out before resolving: its own interpolations (job.num...) may be unset
        job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
        return OmegaConf.to_container(job, resolve=True, throw_on_missing=False)
    container = dict(cfg)
    container.pop("hydra", None)
    return container


def flatten_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, str]:
    """Resolved config as ``{"a.b.c": "value"}``; the ``hydra`` node is left out.

    Values are stringified (None -> "null", lists as JSON) and truncated to MLflow's param limit.
    """
    container = resolved_config(cfg)
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            out[_safe_key(prefix)] = _truncate(_param_text(node), MAX_PARAM_VAL_LENGTH)

    walk("", container)
    return out


def _hydra_node() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def group_names(cfg: DictConfig) -> dict[str, str]:
    """model/classifier/balance/data: Hydra's choices when running under Hydra, else names in cfg."""
    hydra = _hydra_node()
    choices = dict(OmegaConf.select(hydra, "runtime.choices", default={}) or {}) if hydra is not None else {}
    names: dict[str, str] = {}
    for group in GROUPS:
        name = choices.get(group)
        if name is None:
            name = OmegaConf.select(cfg, f"{group}.name", default=None, throw_on_resolution_failure=False)
        if name is None:
            # e.g. balance configs carry only a _target_: NoBalance -> no_balance
            target = OmegaConf.select(
                cfg, f"{group}._target_", default=None, throw_on_resolution_failure=False
            )
            name = _snake(str(target).rsplit(".", 1)[-1]) if target else "none"
        names[group] = str(name)
    return names


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the fid_bench package; (None, None) without git."""
    repo = Path(fid_bench.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


#: what the UI's Source column shows for runs of the benchmark (parents, jobs, studies, trials)
ENTRY_POINT = "python -m fid_bench"


def common_tags() -> dict[str, str]:
    """Tags every run carries: package version, git state, and MLflow's source tags.

    MLflow fills its source tags only for runs started through its fluent API in the main
    process; setting them here gives parent runs and worker-process jobs a Source too.
    """
    tags = {
        "fid_bench_version": __version__,
        "mlflow.source.name": ENTRY_POINT,
        "mlflow.source.type": "LOCAL",
    }
    commit, dirty = git_state()
    if commit is not None:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
        if dirty is not None:
            tags["git_dirty"] = "true" if dirty else "false"
    return tags


def hydra_overrides() -> str:
    """The job's command-line overrides, space separated ("" outside Hydra)."""
    hydra = _hydra_node()
    if hydra is None:
        return ""
    task = OmegaConf.select(hydra, "overrides.task", default=[]) or []
    return " ".join(str(o) for o in task)


def track_tags(cfg: DictConfig, overrides: str) -> dict[str, str]:
    """Which track a job runs and who chose its classifier, so a sweep over ``model`` alone shows
    in every run that a trainable network's config selected ``classifier=finetune`` (the rule
    README.md documents) rather than hiding that a second axis moved.
    """
    finetune = OmegaConf.select(cfg, "classifier._target_", default="") == FINETUNE_TARGET
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides.split()}
    if "classifier" in keys:
        source = "command line"
    elif OmegaConf.select(cfg, "hparams_search", default=None) or OmegaConf.select(
        _hydra_node() or OmegaConf.create(), "runtime.choices.experiment", default=None
    ):
        source = "preset"
    elif finetune:
        source = "model default"  # trainable model configs select classifier=finetune
    else:
        source = "config default"
    return {"track": "finetune" if finetune else "features", "classifier_source": source}


def job_tags(cfg: DictConfig) -> dict[str, str]:
    names = group_names(cfg)
    overrides = hydra_overrides()
    tags = {KIND_TAG: RunKind.JOB.value, **names, **track_tags(cfg, overrides), **common_tags()}
    if overrides:
        tags["overrides"] = _truncate(overrides, MAX_TAG_VAL_LENGTH)
    tags.update(provenance_tags(cfg))
    task_name = OmegaConf.select(cfg, "task_name", default=None, throw_on_resolution_failure=False)
    if task_name:
        tags["task_name"] = str(task_name)
    return tags


def provenance_tags(cfg: DictConfig) -> dict[str, str]:
    """``model.provenance`` (where a model file came from: upstream, conversion, licence) as
    ``model_<key>`` tags, so a run says which weights its numbers belong to."""
    node = OmegaConf.select(cfg, "model.provenance", default=None, throw_on_resolution_failure=False)
    if not isinstance(node, DictConfig):
        return {}
    return {f"model_{k}": str(v) for k, v in node.items() if v is not None}


def headline_note(metrics: Mapping[str, Any]) -> str:
    """The run's description: its headline metrics to 4 decimals, ROC-AUC with its interval."""
    from fid_bench.evaluation import registry

    parts = []
    for name in (*registry.headline(), "tpr_at_fpr_5pct", "threshold"):
        value = _metric_value(metrics.get(name))
        if value is None or math.isnan(value):
            continue
        text = f"**{name}** {value:.4f}"
        low, high = (_metric_value(metrics.get(f"{name}_ci_{end}")) for end in ("low", "high"))
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
            text += f" [{low:.4f}, {high:.4f}]"
        parts.append(text)
    return " · ".join(dict.fromkeys(parts))


def run_name_of(tags: Mapping[str, str], kind: str = "job") -> str:
    """``job-spectrum-logreg-none``: the kind first (a study's runs become ``trial-7`` and
    ``refit-...``), so runs of different kinds never share a name."""
    return "-".join([kind, *(tags[g] for g in ("model", "classifier", "balance"))])


# --------------------------------------------------------------------------- parent run lookup


def sweep_dir_of(hydra_cfg: Any) -> Path:
    """Absolute sweep dir of a ``hydra`` config node."""
    path = Path(str(hydra_cfg.sweep.dir)).expanduser()
    return path if path.is_absolute() else original_cwd(hydra_cfg) / path


def multirun_parent(uri: str) -> str | None:
    """The parent run id recorded in the sweep dir when this job belongs to a multirun."""
    from hydra.types import RunMode

    hydra = _hydra_node()
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        return None
    path = sweep_dir_of(hydra) / PARENT_RUN_FILE
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


#: a multirun job that failed leaves this file in its own output folder (``<sweep dir>/<job num>/``)
JOB_FAILED_FILE = "job_failed.txt"


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


def write_parent_file(sweep_dir: Path, info: Mapping[str, str]) -> Path:
    """Record the parent run for the jobs (atomically: workers may read it at any time)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / PARENT_RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(info), indent=2))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- the run


def _metric_value(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (Number, np.number)):
        return float(value)
    try:
        return float(np.asarray(value).item())
    except (TypeError, ValueError):
        return None


class TrackedRun:
    """One MLflow run; what jobs and detectors log through (see ``detector.RunLogger``)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str, name: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self._params: dict[str, str] = {}

    # ---- plain logging
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics; NaN is kept, None and non-numbers are skipped with a warning."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            number = _metric_value(value)
            if number is None:
                log.warning("metric %s=%r is not a number; not logged", key, value)
                continue
            entries.append(Metric(_safe_key(str(key)), number, now, int(step or 0)))
        for i in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[i : i + MAX_METRICS_PER_BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (stringified, truncated). A key already logged keeps its first value."""
        from mlflow.entities import Param

        fresh: dict[str, str] = {}
        for key, value in params.items():
            key, text = _safe_key(str(key)), _truncate(_param_text(value), MAX_PARAM_VAL_LENGTH)
            if key in self._params:
                # MLflow params are immutable: a second value would fail the whole batch
                if self._params[key] != text:
                    log.warning("param %s already logged as %r; %r not logged", key, self._params[key], text)
                continue
            fresh[key] = text
        items = [Param(k, v) for k, v in fresh.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        self._params.update(fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_safe_key(str(k)), _truncate(str(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder's contents, under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    # ---- fid_bench objects
    def log_samples(self, samples: Samples) -> None:
        """Counts per split and label, skipped rows (``skipped.csv``) and the data fingerprint."""
        table = samples.table
        counts: dict[str, float] = {"n_samples": len(table)}
        for split in ("train", "test"):
            for label in (0, 1):
                mask = (table["split"] == split) & (table["label"] == label)
                counts[f"n_{split}_{LABEL_NAMES[label]}"] = int(mask.sum())
        for (split, label), n in table.groupby(["split", "label"]).size().items():
            name = f"n_{split}_{LABEL_NAMES.get(int(label), label)}"
            counts.setdefault(name, int(n))
        counts["n_skipped"] = len(samples.skipped)
        counts["n_unreadable_predict"] = len(samples.unreadable_predict)
        self.log_metrics(counts)
        self.set_tags({"data_fingerprint": samples.fingerprint(), "data_name": samples.name})
        with tempfile.TemporaryDirectory() as tmp:
            if len(samples.skipped):
                path = Path(tmp) / "skipped.csv"
                samples.skipped.to_csv(path, index=False)
                self.log_artifact(path)
                log.warning("skipped %s; see skipped.csv", describe_skips(samples.skipped))
            if len(samples.unreadable_predict):
                path = Path(tmp) / "unreadable_predict.csv"
                samples.unreadable_predict.to_csv(path, index=False)
                self.log_artifact(path)
                log.warning(
                    "%d prediction rows have unreadable images (scored with the prior); "
                    "see unreadable_predict.csv",
                    len(samples.unreadable_predict),
                )

    def log_datasets(self, parts: Sequence[DatasetPart]) -> None:
        """The rows a run used, as MLflow dataset inputs (see ``fid_bench.tracking.lineage``)."""
        from fid_bench.tracking.lineage import log_dataset_parts

        log_dataset_parts(self.client, self.run_id, parts)

    def log_scores(
        self, scores: pd.DataFrame, metrics: Mapping[str, Any], *, calibration_bins: int = 15
    ) -> None:
        """``predictions.csv`` plus ROC, PR, reliability and confusion-matrix PNGs under ``plots/``.

        ``predictions.csv`` holds the validation rows next to the test rows (``split`` tells them
        apart): the threshold was chosen on them, and a stacked ensemble learns its combiner on
        them later without touching a test label.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.csv"
            scores.to_csv(path, index=False)
            self.log_artifact(path)
            plot_dir = Path(tmp) / "plots"
            plot_dir.mkdir()
            failed = self._draw_plots(scores, metrics, plot_dir, calibration_bins)
            if any(plot_dir.iterdir()):
                self.log_artifact(plot_dir, "plots")
            if failed:
                self.set_tags({"plot_errors": "; ".join(failed)})

    def _draw_plots(
        self, scores: pd.DataFrame, metrics: Mapping[str, Any], out: Path, calibration_bins: int = 15
    ) -> list[str]:
        jobs = [
            ("roc.png", lambda p: plots.roc_curve_png(scores, p, f"ROC {self.name}")),
            ("pr.png", lambda p: plots.pr_curve_png(scores, p, f"PR {self.name}")),
            (
                "reliability.png",
                lambda p: plots.reliability_png(scores, p, calibration_bins, f"Reliability {self.name}"),
            ),
        ]
        threshold = _metric_value(metrics.get("threshold"))
        if threshold is None or math.isnan(threshold):
            log.warning("no threshold in metrics; confusion matrix not drawn")
        else:
            jobs.append(("confusion.png", lambda p: plots.confusion_png(scores, threshold, p)))
        failed = []
        for filename, draw in jobs:
            try:
                draw(out / filename)
            except Exception as err:  # noqa: BLE001 - a broken plot must not fail a finished job
                log.warning("plot %s not drawn: %s", filename, first_line(err))
                failed.append(f"{filename}: {first_line(err)}")
        return failed

    def log_predictor(self, predictor: Predictor) -> str:
        """Log the fitted model in MLflow format (artifact ``model``); returns its model URI."""
        from fid_bench.tracking.pyfunc import log_predictor_model  # imports mlflow's model flavours

        return log_predictor_model(predictor, self.run_id)

    # ---- lifecycle (used by tracked_run)
    def _record_error(self, err: BaseException) -> None:
        try:
            # the user's error, not the wrapper around it (e.g. Hydra's InstantiationException)
            self.set_tags({"error": first_line(user_error(err) or err)})
            self.log_text("".join(traceback.format_exception(err)), "traceback.txt")
        except Exception as log_err:  # noqa: BLE001 - never hide the job's own error
            log.warning("could not record the error in MLflow run %s: %s", self.run_id, first_line(log_err))

    def _end(self, status: str) -> None:
        import mlflow

        try:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status)
            else:
                self.client.set_terminated(self.run_id, status)
        except Exception as err:  # noqa: BLE001 - never hide the job's own error
            log.error("could not close MLflow run %s as %s: %s", self.run_id, status, first_line(err))


def describe_skips(skipped: pd.DataFrame) -> str:
    """ "3 rows (2 truncated, 1 zero-byte)": reasons grouped by the text before their first colon."""
    n = len(skipped)
    rows = f"{n} row" + ("" if n == 1 else "s")
    if "reason" not in skipped.columns or n == 0:
        return rows
    kinds = skipped["reason"].astype(str).str.split(":", n=1).str[0].str.strip().replace("", "unknown")
    parts = [f"{count} {kind}" for kind, count in kinds.value_counts().items()]
    return f"{rows} ({', '.join(parts)})"


def distributed_rank() -> int:
    """This process's rank in a distributed job (0 when not distributed), from the launcher's env."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "0")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


class SilentRun:
    """The run a DDP worker of rank > 0 gets: every logging call does nothing (rank 0 logs the job)."""

    run_id = ""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@contextmanager
def tracked_run(cfg: DictConfig, *, parent_run_id: str | None = None) -> Iterator[TrackedRun]:
    """Run one job inside an MLflow run (see the module docstring).

    ``parent_run_id`` nests the run explicitly; by default a job of a Hydra multirun finds its
    parent in the sweep dir (``ParentRunCallback``). In a distributed (DDP) job only rank 0 logs:
    the other ranks re-run the same entry point and get a run that records nothing.
    """
    if distributed_rank() > 0:
        yield SilentRun()  # type: ignore[misc]
        return
    import mlflow

    tracking = cfg.get("tracking") or {}
    base = original_cwd()
    client, experiment_id, uri = open_experiment(
        str(tracking.get("uri") or DEFAULT_TRACKING_URI),
        str(tracking.get("experiment") or "Default"),
        tracking.get("artifact_root"),
        base,
    )
    # model logging goes through MLflow's fluent API, which needs the global URI and an active run
    mlflow.set_tracking_uri(uri)
    if parent_run_id is None:
        parent_run_id = multirun_parent(uri)
    tags = job_tags(cfg)
    name = run_name_of(tags)
    log.info("%s: track=%s (classifier from the %s)", name, tags["track"], tags["classifier_source"])
    try:
        active = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=name,
            parent_run_id=parent_run_id,
            tags=tags,
            nested=mlflow.active_run() is not None,
            # CPU, memory (and GPU with pynvml) every few seconds, for long runs: tracking.system_metrics
            log_system_metrics=bool(tracking.get("system_metrics", False)),
        )
    except Exception as err:  # noqa: BLE001 - a store failure is one readable line
        raise FidBenchError(f"cannot start an MLflow run in {uri}: {first_line(err)}") from None
    run = TrackedRun(client, active.info.run_id, experiment_id, name)
    log.info("MLflow run %s (%s) in experiment %s at %s", name, run.run_id, experiment_id, uri)
    with closing_run(run):
        run.log_params(flatten_config(cfg))
        run.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg))), "config.yaml")
        yield run


@contextmanager
def closing_run(run: TrackedRun) -> Iterator[TrackedRun]:
    """End ``run`` on exit: FINISHED, FAILED with the error recorded and re-raised, or KILLED."""
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except BaseException as err:
        # Ctrl-C or SIGTERM (see fid_bench.signals); Lightning re-raises either as SystemExit
        if isinstance(err, KeyboardInterrupt) or signals.received() is not None:
            status = "KILLED"
        run._record_error(err)
        raise
    finally:
        run._end(status)
