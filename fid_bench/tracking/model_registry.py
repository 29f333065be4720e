"""The model registry: promote a run's model to a named, aliased version that ``predict`` can serve.

``promote_run`` registers the MLflow model ``model`` of a finished job or ensemble run under a
registered model name, tags the new version with what a reviewer needs to trust it without opening
the run (headline metrics, decision threshold, data fingerprint and dataset digests, the run and its
choices), and points an alias (``champion`` by default) at it. ``fid-bench predict --model
models:/NAME@champion`` then loads it under the same safety rules as ``--run``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError
from fid_bench.tracking.kinds import KIND_TAG, NO_MODEL_KINDS, no_model_reason
from fid_bench.tracking.lineage import CONTEXT_TAG
from fid_bench.tracking.store import first_line

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
#: logged-model tag listing the registered versions made from it (MLflow's own key)
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
DEFAULT_ALIAS = "champion"
#: metrics copied onto a registered version as tags (when the run logged them)
HEADLINE_METRICS = (
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "average_precision",
    "f1",
    "f1_at_threshold",
    "accuracy",
    "log_loss",
    "threshold",
)
#: run tags copied onto a registered version
RUN_TAGS = ("model", "classifier", "balance", "data", "track", "data_fingerprint", "data_name", "git_commit")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    alias: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def check_name(name: str, what: str = "model name") -> str:
    """Registered model names and aliases: letters, digits, ``_ . -`` (they go into ``models:/`` URIs)."""
    if not _NAME.match(name or ""):
        raise FidBenchError(f"{what} {name!r}: use letters, digits, '_', '.' and '-' (no '/', '@' or spaces)")
    return name


def version_tags(run: Run) -> dict[str, str]:
    """Tags a registered version carries: the run's headline metrics, threshold and data digests."""
    tags = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}
    for key in HEADLINE_METRICS:
        value = run.data.metrics.get(key)
        if value is not None and not math.isnan(value):
            tags[key] = f"{value:.6g}"
    for key in RUN_TAGS:
        if key in run.data.tags:
            tags[key] = run.data.tags[key]
    inputs = run.inputs.dataset_inputs if run.inputs is not None else []
    for item in inputs:
        context = next((t.value for t in item.tags if t.key == CONTEXT_TAG), "data")
        tags[f"data_digest.{context}"] = item.dataset.digest
    return tags


def logged_model_id(client: MlflowClient, run: Run) -> str:
    """The id of the MLflow model ``model`` that ``run`` logged (the last one, if it logged several)."""
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    candidates = []
    for output in outputs:
        model = client.get_logged_model(output.model_id)
        if model.name == MODEL_ARTIFACT:
            candidates.append((output.step, model.creation_timestamp or 0, model.model_id))
    if not candidates:
        raise FidBenchError(
            f"run {run.info.run_id} logged no model (tracking.log_model=false?); nothing to promote"
        )
    return max(candidates)[2]


def link_version(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Record the version on the logged model (``mlflow.modelVersions``), as ``mlflow.register_model``
    does: the UI's Models column shows a run's registered versions from that tag."""
    import json

    model = client.get_logged_model(model_id)
    try:
        known = json.loads(model.tags.get(MODEL_VERSIONS_TAG) or "[]")
    except ValueError:
        known = []
    entry = {"name": name, "version": version}
    if entry not in known:
        client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps([*known, entry])})


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="fid_bench fake image detector (label 1 = generated image)"
            )
        except MlflowException as err:
            if "already exists" not in str(err):  # another process created it meanwhile
                raise


def promote_run(client: MlflowClient, run: Run, name: str, *, alias: str = DEFAULT_ALIAS) -> Promotion:
    """Register run ``run``'s model as a new version of ``name`` and point ``alias`` at it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    check_name(name)
    check_name(alias, "alias")
    if re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise FidBenchError(f"alias {alias!r} is reserved by MLflow (versions and 'latest'); choose another")
    kind = run.data.tags.get(KIND_TAG, "")
    if kind in NO_MODEL_KINDS:
        raise FidBenchError(no_model_reason(run.info.run_id, kind))
    if run.info.status != "FINISHED":
        raise FidBenchError(
            f"run {run.info.run_id} is {run.info.status}; only a finished run can be promoted"
        )
    tags = version_tags(run)
    try:
        model_id = logged_model_id(client, run)
        _ensure_registered_model(client, name)
        # the registry resolves a models:/ source through the global URI: point it at this store
        mlflow.set_tracking_uri(client.tracking_uri)
        version = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id
        )
        client.set_registered_model_alias(name, alias, version.version)
        link_version(client, model_id, name, str(version.version))
    except MlflowException as err:
        raise FidBenchError(
            f"cannot register the model of run {run.info.run_id} as {name!r}: {first_line(err)}"
        ) from None
    log.info("registered %s version %s (run %s) with alias %s", name, version.version, run.info.run_id, alias)
    return Promotion(name, str(version.version), alias, run.info.run_id)
