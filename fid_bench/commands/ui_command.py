"""``python -m fid_bench.commands.ui_command``: where to click in the MLflow UI (``make ui`` prints it first).

Prints, for every experiment of the store, the link that opens its runs table on the harness's saved
view (``fid_bench.tracking.ui``); with ``--wait-pid`` only once the server answers. Nothing is
written to the store.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fid_bench.errors import FidBenchError
from fid_bench.tracking.run_queries import open_store
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


def wait_until_up(url: str, pid: int | None, timeout: float) -> str | None:
    """Poll ``url``/health until the server answers; why not (it died, or ``timeout``), or None."""
    import os
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10) as answer:
                if answer.status == 200:
                    return None
        except OSError:
            pass
        if pid is not None:
            try:
                os.kill(pid, 0)
            except OSError:
                return f"the MLflow server (pid {pid}) ended before answering at {url}"
        time.sleep(0.5)
    return f"the MLflow server did not answer at {url} within {timeout:.0f} s"


def main(argv: Sequence[str] | None = None) -> int:
    """``make ui``: print where to click once the server answers (nothing is written to the store)."""
    parser = argparse.ArgumentParser(prog="python -m fid_bench.commands.ui_command", description=main.__doc__)
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="where the UI listens")
    parser.add_argument("--wait-pid", type=int, help="the server's process: wait until it answers first")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    if args.wait_pid is not None:
        print(f"starting the MLflow UI on {args.url} (it takes a while on a busy machine) ...", flush=True)
        problem = wait_until_up(args.url, args.wait_pid, args.timeout)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
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
