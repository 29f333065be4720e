"""What a person opening the MLflow UI over our store sees first.

MLflow 3.17's UI opens an experiment on its GenAI overview unless the "Model training" workflow
is chosen: it takes the workflow from the URL (``workflowType=machine_learning``) or from what the
browser last chose, and ignores the experiment's ``mlflow.experimentKind`` tag for that choice
(the tag is still set, for other MLflow clients and for the experiment's kind shown in the UI).
So experiments the harness creates carry:

* ``mlflow.experimentKind=custom_model_development``;
* a saved view (``mlflow.sharedViewState.fid_bench``): the runs table sorted by ROC-AUC, best
  first (sorting by a metric lists child runs flat instead of folded under their parent), with the
  headline metrics, the group choices, Dataset, Source and Models as columns.

``runs_url`` is the link that opens both; ``make ui`` prints it for every experiment of the store
(``python -m fid_bench.commands.ui_command``).
"""

from __future__ import annotations

import json
import time

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: the prefix the UI gives saved views of the runs table (one experiment tag per view)
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "fid_bench"
VIEW_NAME = "fid_bench: best runs first"
WORKFLOW = "machine_learning"
#: MLflow's description of a run or an experiment (Markdown), shown on its page
NOTE_TAG = "mlflow.note.content"

#: metric columns of the saved view, in order (the leaderboard's headline metrics)
HEADLINE_METRICS = ("roc_auc", "f1", "average_precision", "roc_auc_ci_low", "threshold")
#: the run tag a sweep's end sets on its children: ``top``, ``~`` (tied with the top one), ``behind``
#: or ``n/a`` (not comparable: other test rows)
TOP_TAG = "top"
TAG_COLUMNS = ("model", "classifier", "balance", TOP_TAG)
#: the kinds the saved view hides (trials, sweep and study parents, comparisons): what is left is
#: what the leaderboard ranks (jobs, refits, ensembles, imported runs). MLflow's search has no OR,
#: hence one condition per hidden kind; clearing the search box shows every run again
HIDDEN_KINDS = ("trial", "parent", "study", "comparison")
RUNS_FILTER = " AND ".join(f"tags.`fid_bench.kind` != '{kind}'" for kind in HIDDEN_KINDS)


def _column(kind: str, key: str) -> str:
    # the UI's column id: "<kind>.`<key>`"
    return f"{kind}.`{key}`"


def view_state(metric: str = "roc_auc") -> dict:
    """The runs table a person should land on: flat, best ``metric`` first, headline columns shown."""
    columns = [_column("metrics", m) for m in dict.fromkeys((metric, *HEADLINE_METRICS))]
    columns += [_column("tags", t) for t in TAG_COLUMNS]
    columns += [_column("attributes", a) for a in ("Dataset", "Source", "Models")]
    return {
        # metrics right after the run name: the UI otherwise puts the wide Dataset column first
        "columnOrder": columns,
        "searchFilter": RUNS_FILTER,
        "orderByKey": _column("metrics", metric),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
    }


def saved_view_tag(metric: str = "roc_auc", now_ms: int | None = None) -> tuple[str, str]:
    """(key, value) of the experiment tag holding the saved view, in the envelope the UI reads."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {
        "name": VIEW_NAME,
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(view_state(metric)),
    }
    return SAVED_VIEW_PREFIX + VIEW_ID, json.dumps(envelope)


def experiment_tags(metric: str = "roc_auc") -> dict[str, str]:
    """Tags for an experiment the harness creates."""
    key, value = saved_view_tag(metric)
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, key: value}


def experiment_description(experiment_id: str, metric: str = "roc_auc") -> str:
    """The experiment's description (its ``mlflow.note.content``): where the answer is, as links
    relative to the UI, so they work on any host and port."""
    view = runs_url("", experiment_id).lstrip("/")
    everything = runs_url("", experiment_id, with_view=False).lstrip("/")
    return (
        f"**[The runs, best {metric} first]({view})**: jobs only; trials, study and sweep parents "
        f"are filtered out ([every run]({everything}), or clear the search box). Column `top`: the "
        f"best run of a sweep (`top`), those not significantly behind it (`~`), the others (`behind`). Each run's "
        f"description holds its headline metrics; each sweep's or study's parent run holds "
        f"`report.html` (leaderboard, curves, per-group bars, audit warnings) in its Artifacts."
    )


def runs_url(base: str, experiment_id: str, *, with_view: bool = True) -> str:
    """The UI link to an experiment's runs table in the Model training workflow (and our view)."""
    query = f"workflowType={WORKFLOW}"
    if with_view:
        query += f"&viewStateShareKey={VIEW_ID}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def run_url(base: str, experiment_id: str, run_id: str, tab: str = "artifacts") -> str:
    """The UI link to one run's page (``tab``: overview, model-metrics, artifacts, ...)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/{tab}?workflowType={WORKFLOW}"


def model_url(base: str, name: str) -> str:
    """The UI link to a registered model's page."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}/#/models/{quote(name, safe='')}?workflowType={WORKFLOW}"
