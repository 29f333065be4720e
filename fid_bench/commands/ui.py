"""``python -m fid_bench.commands.ui``: where to click in the MLflow UI (``make ui`` prints it first).

Prints, for every experiment of the store, the link that opens its runs table on the harness's saved
view (``fid_bench.tracking.ui``); nothing is written to the store.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError
from fid_bench.tracking.runs import open_store
from fid_bench.tracking.store import resolve_tracking_uri
from fid_bench.tracking.ui import SAVED_VIEW_PREFIX, VIEW_ID, runs_url

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


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
    parser = argparse.ArgumentParser(prog="python -m fid_bench.commands.ui", description=main.__doc__)
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
