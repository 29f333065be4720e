"""The tags that say what a run is: the job's group choices and track, the package and git state,
the run's name and its description.

``job_tags`` takes the pieces explicitly; ``job_tags_of_config`` (and ``group_names``) read them
from a composed config and the running Hydra job, once, at the top of a job.
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import fid_bench
from fid_bench import __version__
from fid_bench.contract import FINETUNE_TRACK
from fid_bench.tracking.kinds import KIND_TAG, RunKind
from fid_bench.tracking.logged_values import MAX_TAG_VAL_LENGTH, metric_value, truncate

GROUPS = ("model", "classifier", "balance", "data")
#: what the UI's Source column shows for runs of the benchmark (parents, jobs, studies, trials)
ENTRY_POINT = "python -m fid_bench"


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


def classifier_source(overrides: str, *, track: str, preset: bool) -> str:
    """Who chose the classifier, so a sweep over ``model`` alone shows in every run that a trainable
    network's config selected ``classifier=finetune`` (the rule README.md documents) rather than
    hiding that a second axis moved. ``preset``: an ``experiment=`` or ``hparams_search=`` preset ran.
    """
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides.split()}
    if "classifier" in keys:
        return "command line"
    if preset:
        return "preset"
    if track == FINETUNE_TRACK:
        return "model default"  # trainable model configs select classifier=finetune
    return "config default"


def provenance_tags(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """``model.provenance`` (where a model file came from: upstream, conversion, licence) as
    ``model_<key>`` tags, so a run says which weights its numbers belong to."""
    return {f"model_{k}": str(v) for k, v in (provenance or {}).items() if v is not None}


def job_tags(
    groups: Mapping[str, str],
    *,
    track: str,
    classifier_source: str,
    overrides: str = "",
    provenance: Mapping[str, Any] | None = None,
    task_name: str | None = None,
) -> dict[str, str]:
    """A job run's tags: kind, the ``GROUPS`` choices, track and classifier source, the common tags,
    the command-line overrides, the model's provenance and the task name."""
    tags = {
        KIND_TAG: RunKind.JOB.value,
        **groups,
        "track": track,
        "classifier_source": classifier_source,
        **common_tags(),
    }
    if overrides:
        tags["overrides"] = truncate(overrides, MAX_TAG_VAL_LENGTH)
    tags.update(provenance_tags(provenance))
    if task_name:
        tags["task_name"] = str(task_name)
    return tags


def run_name_of(tags: Mapping[str, str], kind: str = "job") -> str:
    """``job-spectrum-logreg-none``: the kind first (a study's runs become ``trial-7`` and
    ``refit-...``), so runs of different kinds never share a name."""
    return "-".join([kind, *(tags[g] for g in ("model", "classifier", "balance"))])


def headline_note(metrics: Mapping[str, Any]) -> str:
    """The run's description: its headline metrics to 4 decimals, ROC-AUC with its interval."""
    from fid_bench.evaluation import metric_registry

    parts = []
    for name in (*metric_registry.headline(), "tpr_at_fpr_5pct", "threshold"):
        value = metric_value(metrics.get(name))
        if value is None or math.isnan(value):
            continue
        text = f"**{name}** {value:.4f}"
        low, high = (metric_value(metrics.get(f"{name}_ci_{end}")) for end in ("low", "high"))
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
            text += f" [{low:.4f}, {high:.4f}]"
        parts.append(text)
    return " · ".join(dict.fromkeys(parts))


# --------------------------------------------------------------------------- read from the config


def hydra_node() -> DictConfig | None:
    """The running Hydra job's ``hydra`` node; None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def group_names(cfg: DictConfig) -> dict[str, str]:
    """model/classifier/balance/data: Hydra's choices when running under Hydra, else names in cfg."""
    hydra = hydra_node()
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


def hydra_overrides() -> str:
    """The job's command-line overrides, space separated ("" outside Hydra)."""
    hydra = hydra_node()
    if hydra is None:
        return ""
    task = OmegaConf.select(hydra, "overrides.task", default=[]) or []
    return " ".join(str(o) for o in task)


def job_tags_of_config(cfg: DictConfig, *, track: str) -> dict[str, str]:
    """``job_tags`` with every piece read from ``cfg`` and the running Hydra job; ``track`` as the
    job's detector declares it (``contract.detector_track``)."""
    overrides = hydra_overrides()
    preset = bool(
        OmegaConf.select(cfg, "hparams_search", default=None)
        or OmegaConf.select(hydra_node() or OmegaConf.create(), "runtime.choices.experiment", default=None)
    )
    provenance = OmegaConf.select(cfg, "model.provenance", default=None, throw_on_resolution_failure=False)
    task_name = OmegaConf.select(cfg, "task_name", default=None, throw_on_resolution_failure=False)
    return job_tags(
        group_names(cfg),
        track=track,
        classifier_source=classifier_source(overrides, track=track, preset=preset),
        overrides=overrides,
        provenance=dict(provenance.items()) if isinstance(provenance, DictConfig) else None,
        task_name=str(task_name) if task_name else None,
    )
