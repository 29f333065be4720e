"""Leave-one-source-out runs side by side: every held-out source's ROC-AUC with its interval, and a
paired DeLong test per source (the runs held out the same rows), for runs of one experiment.

    python benchmarks/generalise.py --experiment generalise [--runs RUN_ID ...]

Without ``--runs``: every finished run of the experiment that logged ``loso/worst_roc_auc``, oldest
first; the first is the reference the others are tested against. Prints a Markdown table (the
figures in docs/BENCHMARKS.md, "Generalising detector", come from it).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fid_bench.evaluation.paired import delong_test
from fid_bench.markdown import table


def _num(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.3f}"


def label_of(run) -> str:  # noqa: ANN001 - an mlflow Run
    tags = run.data.tags
    return tags.get("task_name", run.info.run_name or run.info.run_id[:8])


def main() -> None:
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="generalise")
    parser.add_argument("--runs", nargs="*", default=None, help="run ids; the first is the reference")
    args = parser.parse_args()
    # the harness's own default store unless MLFLOW_TRACKING_URI says otherwise
    client = mlflow.MlflowClient(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db"))
    if args.runs:
        runs = [client.get_run(r) for r in args.runs]
    else:
        exp = client.get_experiment_by_name(args.experiment)
        if exp is None:
            raise SystemExit(f"no experiment {args.experiment!r}")
        runs = [
            r
            for r in client.search_runs(
                [exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["start_time"]
            )
            if "loso/worst_roc_auc" in r.data.metrics
        ]
    if not runs:
        raise SystemExit("no leave-one-source-out runs found")
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            path = client.download_artifacts(run.info.run_id, "loso/scores.csv", tmp + "/" + run.info.run_id)
            scores[run.info.run_id] = pd.read_csv(Path(path))
    ref = runs[0]
    sources = sorted(scores[ref.info.run_id]["source"].unique())
    header = ["held-out source", "n"]
    for run in runs:
        header.append(f"{label_of(run)} ROC-AUC [95% CI]")
    for run in runs[1:]:
        header.append(f"{label_of(run)} − {label_of(ref)} (DeLong p)")
    rows = []
    for source in sources:
        held_out = scores[ref.info.run_id]
        row = [source, str(int((held_out["source"] == source).sum()))]
        for run in runs:
            m = run.data.metrics
            row.append(
                f"{_num(m.get(f'loso/{source}/roc_auc', math.nan))} "
                f"[{_num(m.get(f'loso/{source}/roc_auc_ci_low', math.nan))}, "
                f"{_num(m.get(f'loso/{source}/roc_auc_ci_high', math.nan))}]"
            )
        a = scores[ref.info.run_id]
        a = a[a["source"] == source].set_index("id")
        for run in runs[1:]:
            b = scores[run.info.run_id]
            b = b[b["source"] == source].set_index("id")
            if set(a.index) != set(b.index):
                row.append("rows differ")
                continue
            b = b.loc[a.index]
            res = delong_test(
                a["label"].to_numpy(dtype=np.int64), b["score"].to_numpy(), a["score"].to_numpy()
            )
            row.append(f"{res.diff:+.3f} (p={res.p_value:.2g})")
        rows.append(row)
    for key in ("mean_roc_auc", "worst_roc_auc"):
        row = [f"**{key.replace('_', ' ')}**", ""]
        row += [_num(run.data.metrics.get(f"loso/{key}", math.nan)) for run in runs]
        row += [
            f"{run.data.metrics.get(f'loso/{key}', math.nan) - ref.data.metrics.get(f'loso/{key}', math.nan):+.3f}"
            for run in runs[1:]
        ]
        rows.append(row)
    row = ["in distribution (all sources, hold-out)", ""]
    row += [_num(run.data.metrics.get("roc_auc", math.nan)) for run in runs]
    row += [""] * (len(runs) - 1)
    rows.append(row)
    print(table(header, rows, [False, True] + [True] * (len(header) - 2)))
    for run in runs:
        print(f"- {label_of(run)}: run {run.info.run_id}")


if __name__ == "__main__":
    main()
