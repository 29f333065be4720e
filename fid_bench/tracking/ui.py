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
(``python -m fid_bench.tracking.ui``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError
from fid_bench.tracking.leaderboard import open_store
from fid_bench.tracking.store import resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: the prefix the UI gives saved views of the runs table (one experiment tag per view)
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "fid_bench"
VIEW_NAME = "fid_bench: best runs first"
WORKFLOW = "machine_learning"

#: metric columns of the saved view, in order (the leaderboard's headline metrics)
HEADLINE_METRICS = ("roc_auc", "f1", "average_precision", "roc_auc_ci_low", "threshold")
TAG_COLUMNS = ("model", "classifier", "balance")


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
        "searchFilter": "",
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


def experiment_links(client: MlflowClient, base: str) -> list[tuple[str, str]]:
    """(experiment name, runs URL) of every active experiment that holds runs, by name."""
    links = []
    for exp in client.search_experiments():
        if exp.name == "Default" and not client.search_runs([exp.experiment_id], max_results=1):
            continue
        links.append(
            (exp.name, runs_url(base, exp.experiment_id, with_view=SAVED_VIEW_PREFIX + VIEW_ID in exp.tags))
        )
    return sorted(links)


def main(argv: Sequence[str] | None = None) -> int:
    """``make ui``: print where to click before the server starts (nothing is written to the store)."""
    parser = argparse.ArgumentParser(prog="python -m fid_bench.tracking.ui", description=main.__doc__)
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="where the UI will listen")
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        links = experiment_links(open_store(uri), args.url)
    except FidBenchError as err:
        print(f"no experiments yet ({err}); run `make run` first. The UI: {args.url}")
        return 0
    print(f"MLflow UI on {args.url}; the runs of each experiment, best first:")
    for name, url in links:
        print(f"  {name}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
