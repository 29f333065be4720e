"""``fid-bench predict``: score new images with the model logged in any run, either track.

    fid-bench predict --run RUN_ID --out submission.csv data=kaggle data.root=/data/generated-or-not
    fid-bench predict --run best --out predictions.csv data=folder data.root=/data/cifake
    fid-bench predict --run best --images /some/folder --out predictions.csv

A data set is named by Hydra-style ``data=...`` overrides, as ``audit`` and ``import-predictions``
take them, and read by the reader its config builds (``fid_bench.data.readers.read_samples``):
what it names to score (Kaggle's test.csv rows: a submission), else every image. ``--data NAME
--root DIR`` is the older spelling of ``data=NAME data.root=DIR`` and means exactly that.

The model is the MLflow model ``model`` of a run (``fid_bench.predict`` loads and applies it); the
inputs come from ``fid_bench.data.inputs``, the run from ``fid_bench.tracking.run_queries``, the location
check from ``fid_bench.tracking.model_location`` and the written file from ``fid_bench.submission``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pandas as pd

from fid_bench.commands.common import add_tracking_uri, run_standalone
from fid_bench.data.inputs import configured_inputs, images_under
from fid_bench.errors import UsageError
from fid_bench.predict import choose_feature_cache, default_cache_dir, load_checked_predictor, predict_all
from fid_bench.submission import build_output, check_spreadsheet_safe, report_unreadable, write_output
from fid_bench.tracking.kinds import MODEL_NAME
from fid_bench.tracking.model_location import local_path, model_uri_locations
from fid_bench.tracking.run_queries import make_client, resolve_run, tracking_uri

if TYPE_CHECKING:
    from omegaconf import DictConfig

NAME = "predict"
PROG = "fid-bench predict"
HELP = "score images (or write a Kaggle submission) with a logged run's model"
DESCRIPTION = "Score images with the model logged in a run (either track) and write a CSV."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench predict`` (also ``python -m fid_bench.commands.predict_command``)."""
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", help="run id, or 'best': the best finished run of --experiment by --metric")
    model.add_argument(
        "--model-uri",
        "--model",
        help="an MLflow model URI (runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS) "
        "or a model folder inside the store",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Hydra overrides naming the data set to score, e.g. data=folder data.root=DIR (as for audit)",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--images", metavar="DIR", help="score every image file under DIR (ids = relative paths)"
    )
    data.add_argument(
        "--data", choices=("kaggle", "folder"), help="with --root DIR: the same as data=NAME data.root=DIR"
    )
    p.add_argument("--root", metavar="DIR", help="data set folder for --data")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")
    p.add_argument(
        "--labels",
        action="store_true",
        help="Kaggle submission: target = 0/1 label at the run's stored threshold instead of the probability",
    )
    p.add_argument(
        "--experiment",
        metavar="NAME",
        help="experiment of --run best (default: the only one with runs); with a run id, that run's experiment",
    )
    p.add_argument(
        "--metric",
        default="roc_auc",
        help="metric ranking --run best (default: roc_auc; losses such as log_loss rank lowest first)",
    )
    add_tracking_uri(p)
    p.add_argument(
        "--allow-external",
        action="store_true",
        help="load a model stored outside the tracking store (a pickle can run code: only if you trust it)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="images per call to the model (default: 1024; the model batches internally as in training)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="feature cache for embedding models (default: the training run's cache folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def check_arguments(args: argparse.Namespace) -> None:
    if args.run is not None and not args.run.strip():
        raise UsageError("--run is empty: give a run id (see fid-bench leaderboard) or 'best'")
    overrides = list(getattr(args, "overrides", None) or [])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"{bad[0]!r} is not an override (key=value), e.g. data=folder data.root=DIR")
    if args.images and overrides:
        raise UsageError("give --images DIR or data overrides (data=NAME data.root=DIR), not both")
    if not (args.images or args.data or overrides):
        raise UsageError(
            "say what to score: --images DIR, or data overrides such as data=folder data.root=DIR"
        )
    if args.data and not args.root:
        raise UsageError(f"--data {args.data} needs --root")
    if args.root and not args.data:
        raise UsageError("--root is read only with --data")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the CSV file to write")


def data_config(args: argparse.Namespace, cache_dir: Path) -> DictConfig:
    """The project config composed with the data overrides (``--data NAME --root DIR``: ``data=NAME``
    with ``data.root`` set to DIR as typed, whatever characters the path holds); readers keep their
    file checks in ``cache_dir``."""
    from fid_bench.config import compose

    overrides = list(getattr(args, "overrides", None) or [])
    cfg = compose([f"data={args.data}", *overrides] if args.data else overrides)
    if args.data:
        cfg.data.root = str(Path(args.root).expanduser())
    cfg.features.cache_dir = str(cache_dir)
    return cfg


def _absolute_if_path(model_uri: str) -> str:
    """``--model-uri`` naming a folder: made absolute here, from the working directory the user typed it
    in (a URI with a scheme is left as it is)."""
    path = local_path(model_uri)
    if path is None or urlparse(model_uri).scheme == "file":
        return model_uri
    return str(Path(path).expanduser().absolute())


def predict(args: argparse.Namespace) -> pd.DataFrame:
    """Run the command for parsed ``args``; returns the written table."""
    check_arguments(args)
    uri = tracking_uri(args.tracking_uri)
    cache_dir = (args.cache_dir or default_cache_dir()).expanduser()

    # data problems show before any model is downloaded
    if args.images:
        inputs = images_under(args.images, cache_dir)
    else:
        inputs = configured_inputs(data_config(args, cache_dir))
    check_spreadsheet_safe(inputs.expected_ids or inputs.ids)

    client = make_client(uri)
    if args.run:
        run = resolve_run(client, args.run, experiment=args.experiment, metric=args.metric)
        model_uri = f"runs:/{run.info.run_id}/{MODEL_NAME}"
    else:
        model_uri = _absolute_if_path(args.model_uri)
    locations = model_uri_locations(client, model_uri)
    predictor = load_checked_predictor(model_uri, locations, client, uri, allow_external=args.allow_external)
    choose_feature_cache(predictor, args.cache_dir)

    scores = predict_all(predictor, inputs, batch_size=args.batch_size, progress=not args.no_progress)
    prior = float(getattr(predictor, "prior", 0.5))
    table = build_output(inputs, scores, predictor, labels=args.labels)
    write_output(table, args.out, inputs.expected_ids or inputs.ids, labels=args.labels)
    report_unreadable(inputs, args.out, prior)
    what = "0/1 labels" if args.labels and inputs.kind == "kaggle" else "scores"
    print(f"wrote {len(table)} {what} from {model_uri} to {args.out}")
    return table


def run(args: argparse.Namespace) -> int:
    """The command for parsed ``args``; its exit code."""
    predict(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fid_bench.commands.predict_command``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
