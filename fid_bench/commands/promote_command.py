"""``fid-bench promote``: register a run's model in the MLflow model registry and give it an alias.

fid-bench promote --run best --experiment demo --name fid-detector            # alias champion
fid-bench promote --run RUN_ID --name fid-detector --alias challenger
fid-bench predict --model models:/fid-detector@champion --data kaggle --root DIR --out submission.csv
"""

from __future__ import annotations

import argparse

from fid_bench.commands.common import add_tracking_uri
from fid_bench.tracking.model_registry import DEFAULT_ALIAS, check_name, promote_run
from fid_bench.tracking.run_queries import make_client, resolve_run, tracking_uri

NAME = "promote"
HELP = "register a run's model in the model registry and set an alias (champion)"
DESCRIPTION = (
    "Register the model of a run (a run id, or 'best': the best finished run of --experiment by "
    "--metric) as a new version of a registered model, tag the version with the run's headline "
    "metrics, threshold and data digests, and point an alias at it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run id, or 'best': the best finished run by --metric")
    p.add_argument("--name", required=True, help="registered model name (created when missing)")
    p.add_argument(
        "--alias", default=DEFAULT_ALIAS, help=f"alias to point at the new version (default: {DEFAULT_ALIAS})"
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="experiment of --run best (default: the only one with runs)"
    )
    p.add_argument("--metric", default="roc_auc", help="metric ranking --run best (default: roc_auc)")
    add_tracking_uri(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_name(args.name)
    check_name(args.alias, "alias")
    client = make_client(tracking_uri(args.tracking_uri))
    run = resolve_run(client, args.run, experiment=args.experiment, metric=args.metric)
    promotion = promote_run(client, run, args.name, alias=args.alias)
    score = run.data.metrics.get(args.metric)
    shown = f" ({args.metric}={score:.4f})" if score is not None else ""
    print(
        f"registered run {promotion.run_id}{shown} as {promotion.name} version {promotion.version}, "
        f"alias {promotion.alias}: {promotion.uri}"
    )
    return 0
