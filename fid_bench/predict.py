"""``fid-bench predict``: score new images with the model logged in any run, either track.

    fid-bench predict --run RUN_ID --data kaggle --root /data/generated-or-not --out submission.csv
    fid-bench predict --run best --images /some/folder --out predictions.csv

The model is the MLflow model ``model`` of a run: a pickled ``fid_bench.detector.Predictor`` (a
fine-tuned network, or an encoder plus a classifier on cached features). Its ``predict_paths``
applies the training preprocessing; its ``threshold`` and ``prior`` come from training.

Outputs:
* ``--data kaggle``: ``id,target`` for every id of ``test.csv``, in that order, ids verbatim;
  ``target`` is the probability, or the 0/1 label at the run's threshold with ``--labels``;
* ``--images DIR`` / ``--data folder``: ``id,path,score,label``.

An image that cannot be read is never dropped: it gets the training prior as its probability and
is reported. The written file is re-read and validated before the command reports success.

Loading a pickle runs code, so the model must come from the tracking store itself (see
``check_model_location``) unless ``--allow-external`` is given.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError
from fid_bench.tracking.run import KIND_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from fid_bench.detector import Predictor

log = logging.getLogger(__name__)

MODEL_NAME = "model"
#: suffixes taken by ``--images`` (any case)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif", ".heic"}
)
#: metrics where a smaller value is better; every other metric is maximised
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "brier_score", "ece", "eer", "loss"})
#: run kinds that never hold a model of their own (sweep and study parents, search trials, comparisons)
NON_MODEL_KINDS = frozenset({"parent", "sweep", "study", "trial", "comparison"})
#: how many unreadable ids are printed on the terminal (all of them go to a side file)
SHOW_UNREADABLE = 20


# --------------------------------------------------------------------------- tracking store


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else MLFLOW_TRACKING_URI, else the project's default store; local paths made
    absolute (the same resolution as the jobs that wrote the runs)."""
    from fid_bench.tracking.leaderboard import default_tracking_uri
    from fid_bench.tracking.store import resolve_tracking_uri

    return resolve_tracking_uri(explicit or default_tracking_uri())


def make_client(uri: str) -> MlflowClient:
    """A client for an existing store (reading never creates an empty store at a mistyped path)."""
    from fid_bench.tracking.leaderboard import open_store

    return open_store(uri)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.endswith("_loss") or metric.endswith("_std")


def _experiment_ids_with_runs(client: MlflowClient) -> dict[str, str]:
    """``{name: experiment_id}`` of the active experiments that hold at least one run."""
    out = {}
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], max_results=1):
            out[exp.name] = exp.experiment_id
    return out


def resolve_experiment(client: MlflowClient, name: str | None) -> tuple[str, str]:
    """``(name, experiment_id)``: the named experiment, or the only one that holds runs."""
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            choices = sorted(_experiment_ids_with_runs(client))
            raise FidBenchError(f"no experiment named {name!r}; experiments with runs: {choices or 'none'}")
        return exp.name, exp.experiment_id
    with_runs = _experiment_ids_with_runs(client)
    if not with_runs:
        raise FidBenchError("the tracking store holds no runs yet; run `python -m fid_bench` first")
    if len(with_runs) > 1:
        raise FidBenchError(
            f"several experiments hold runs, choose one with --experiment: {sorted(with_runs)}"
        )
    ((exp_name, exp_id),) = with_runs.items()
    return exp_name, exp_id


def model_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Finished runs of an experiment that can hold a model (sweep parents and comparisons left out)."""
    from fid_bench.tracking.leaderboard import fetch_runs

    runs = fetch_runs(client, [experiment_id])
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    return [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and r.info.run_id not in parents
        and r.data.tags.get(KIND_TAG, "") not in NON_MODEL_KINDS
    ]


def rank_runs(client: MlflowClient, experiment: str | None, metric: str) -> tuple[str, list[Run]]:
    """The finished model runs of an experiment, best first by ``metric`` (NaN values left out)."""
    exp_name, exp_id = resolve_experiment(client, experiment)
    runs = model_runs(client, exp_id)
    if not runs:
        raise FidBenchError(f"experiment {exp_name!r} has no finished runs")
    scored = [r for r in runs if not math.isnan(r.data.metrics.get(metric, math.nan))]
    if not scored:
        # the headline metrics only: per-group and audit metrics ("a/b") and "_std" would drown them
        logged = sorted({k for r in runs for k in r.data.metrics if "/" not in k and not k.endswith("_std")})
        shown = ", ".join(logged[:20]) + (", ..." if len(logged) > 20 else "")
        raise FidBenchError(
            f"metric {metric!r} was never logged in experiment {exp_name!r} (logged: {shown or 'none'})"
        )
    sign = 1.0 if lower_is_better(metric) else -1.0
    # ties broken by run id, as the leaderboard breaks them: its first row is what "best" picks
    scored.sort(key=lambda r: (sign * r.data.metrics[metric], r.info.run_id))
    return exp_name, scored


def runs_with_models(client: MlflowClient, experiment_id: str, name: str = MODEL_NAME) -> set[str] | None:
    """Ids of the runs of an experiment that logged a model called ``name``; None if the store cannot tell."""
    ids: set[str] = set()
    token = None
    try:
        while True:
            page = client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
            )
            ids.update(m.source_run_id for m in page if m.source_run_id)
            token = page.token
            if not token:
                return ids
    except Exception as err:  # noqa: BLE001 - a store without the logged-model API: do not filter
        log.debug("logged-model search failed: %s", err)
        return None


def resolve_run(client: MlflowClient, spec: str, *, experiment: str | None, metric: str) -> Run:
    """A run id, or ``best``: the best finished run of the experiment by ``metric``."""
    from mlflow.exceptions import MlflowException

    if spec == "best":
        exp_name, ranked = rank_runs(client, experiment, metric)
        with_model = runs_with_models(client, ranked[0].info.experiment_id)
        if with_model:  # empty or None: the store cannot tell (models logged another way); load will say
            usable = [r for r in ranked if r.info.run_id in with_model]
            if not usable:
                raise FidBenchError(
                    f"no finished run of experiment {exp_name!r} ranked by {metric} logged a model "
                    "(tracking.log_model=false?)"
                )
            if usable[0] is not ranked[0]:
                log.warning(
                    "best run by %s, %s, logged no model; using the best run that did",
                    metric,
                    ranked[0].info.run_id,
                )
            ranked = usable
        best = ranked[0]
        log.info(
            "best run of %r by %s: %s (%s=%.4f)",
            exp_name,
            metric,
            best.info.run_id,
            metric,
            best.data.metrics[metric],
        )
        return best
    try:
        run = client.get_run(spec)
    except MlflowException:
        raise FidBenchError(f"unknown run {spec!r} in the tracking store {client.tracking_uri}") from None
    kind = run.data.tags.get(KIND_TAG, "")
    if kind in NON_MODEL_KINDS:
        raise FidBenchError(
            f"run {spec} is a {kind} run and holds no model; give one of its job runs or --run best"
        )
    return run


# --------------------------------------------------------------------------- model location check


@dataclass(frozen=True)
class StoreRoots:
    """Where a tracking store keeps artifacts: local folders, or the artifact service of a server."""

    local: tuple[Path, ...] = ()
    server: str | None = None  # scheme://host:port of an MLflow server


def _configured_artifact_root() -> Path | None:
    """``tracking.artifact_root`` of conf/config.yaml, resolved like a run resolves it (from the cwd)."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "config.yaml"
    if not conf.is_file():
        return None
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = OmegaConf.select(OmegaConf.load(conf), "tracking.artifact_root", default=None)
    except OmegaConfBaseException as err:  # e.g. an interpolation only Hydra can resolve
        log.debug("tracking.artifact_root not resolvable outside a job: %s", err)
        return None
    return Path(str(value)).expanduser().resolve() if value else None


def store_roots(uri: str, extra: Sequence[str | Path] = ()) -> StoreRoots:
    """The artifact locations a tracking store produces (what ``check_model_location`` accepts)."""
    parsed = urlparse(uri)
    extra_paths = tuple(Path(p).expanduser().resolve() for p in extra)
    if parsed.scheme in ("http", "https"):
        return StoreRoots(local=extra_paths, server=f"{parsed.scheme}://{parsed.netloc}")
    if parsed.scheme.startswith("sqlite"):
        # sqlite:///relative.db or sqlite:////absolute.db
        db = uri.split(":///", 1)[1] if ":///" in uri else ""
        folder = Path(db).expanduser().resolve().parent if db and db != ":memory:" else None
    elif parsed.scheme in ("", "file"):
        folder = Path(unquote(parsed.path) if parsed.scheme else uri).expanduser().resolve()
    else:
        folder = None  # other database back ends: only the configured root is known to be ours
    roots = [p for p in (folder, _configured_artifact_root()) if p is not None]
    return StoreRoots(local=tuple(dict.fromkeys([*roots, *extra_paths])))


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:3] in (":\\", ":/")):
        return Path(location)  # a plain path (or a Windows drive path)
    return None


def location_problem(location: str, roots: StoreRoots) -> str | None:
    """Why ``location`` is not inside the tracking store, or None when it is."""
    parsed = urlparse(location)
    if parsed.scheme == "mlflow-artifacts":
        if roots.server is None:
            return f"{location} names an MLflow server's artifacts, but the tracking store is local"
        if parsed.netloc and f"{roots.server.split('://', 1)[1]}" != parsed.netloc:
            return f"{location} is served by another server than {roots.server}"
        return None
    if parsed.scheme in ("http", "https"):
        if roots.server is not None and f"{parsed.scheme}://{parsed.netloc}" == roots.server:
            return None
        return f"{location} is not served by the tracking server"
    path = _local_path(location)
    if path is None:
        return f"{location} is outside the tracking store ({parsed.scheme}:// storage it did not produce)"
    real = path.expanduser().resolve()  # resolves '..' and symlinks: no escaping the root
    if any(real == root or real.is_relative_to(root) for root in roots.local):
        return None
    where = ", ".join(str(r) for r in roots.local) or "a remote server"
    return f"{real} is outside the tracking store's artifact root ({where})"


def check_model_location(locations: Sequence[str], roots: StoreRoots, *, allow_external: bool) -> None:
    """Refuse to unpickle a model whose files come from outside the tracking store."""
    for location in locations:
        problem = location_problem(location, roots)
        if problem is None:
            continue
        if allow_external:
            log.warning("loading a model from outside the tracking store: %s", problem)
            continue
        raise FidBenchError(
            f"refusing to load the model: {problem}; a pickled model can run arbitrary code, "
            "pass --allow-external if you trust it"
        )


def logged_model_locations(client: MlflowClient, run: Run, name: str = MODEL_NAME) -> list[str]:
    """Where ``runs:/<run>/<name>`` reads from: the run's artifacts and the run's logged model, if any."""
    locations = [f"{run.info.artifact_uri.rstrip('/')}/{name}"]
    try:
        models = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'"
        )
    except Exception as err:  # noqa: BLE001 - old servers lack the logged-model API; run artifacts remain
        log.debug("logged-model search failed: %s", err)
        models = []
    locations += [m.artifact_location for m in models if m.source_run_id == run.info.run_id]
    return locations


def model_uri_locations(client: MlflowClient, model_uri: str, depth: int = 0) -> tuple[list[str], str | None]:
    """``(locations, run_id)`` that a model URI reads from, following ``runs:/`` and ``models:/``."""
    from mlflow.exceptions import MlflowException

    parsed = urlparse(model_uri)
    if depth > 3:
        raise FidBenchError(f"model URI {model_uri!r}: too many indirections")
    try:
        if parsed.scheme == "runs":
            run_id, _, rel = parsed.path.lstrip("/").partition("/")
            run = client.get_run(run_id)
            return logged_model_locations(client, run, rel or MODEL_NAME), run_id
        if parsed.scheme == "models":
            ref = parsed.path.lstrip("/") or parsed.netloc
            if "/" not in ref:  # models:/<logged model id>
                model = client.get_logged_model(ref)
                return [model.artifact_location], model.source_run_id
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
            return model_uri_locations(client, mv.source, depth + 1)
    except MlflowException as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FidBenchError(f"model URI {model_uri!r} not found in {client.tracking_uri}: {msg}") from None
    return [model_uri], None


def pin_alias(client: MlflowClient, model_uri: str) -> str:
    """``models:/NAME@ALIAS`` -> ``models:/NAME/VERSION``, the version the alias points at now, so the
    version whose files are checked is the version loaded; any other URI is returned unchanged."""
    from mlflow.exceptions import MlflowException

    parsed = urlparse(model_uri)
    ref = parsed.path.lstrip("/") or parsed.netloc
    if parsed.scheme != "models" or "@" not in ref or "/" in ref:
        return model_uri
    name, alias = ref.split("@", 1)
    try:
        version = client.get_model_version_by_alias(name, alias).version
    except MlflowException as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FidBenchError(f"model URI {model_uri!r} not found in {client.tracking_uri}: {msg}") from None
    log.info("%s is version %s", model_uri, version)
    return f"models:/{name}/{version}"


# --------------------------------------------------------------------------- loading the predictor


def load_checked_predictor(
    model_uri: str, locations: Sequence[str], uri: str, *, allow_external: bool
) -> Predictor:
    """Check where the model's files come from, then unpickle its ``Predictor``."""
    check_model_location(locations, store_roots(uri), allow_external=allow_external)
    from fid_bench.tracking.pyfunc import load_predictor

    return load_predictor(model_uri, tracking_uri=uri)


# --------------------------------------------------------------------------- images to predict


@dataclass
class Inputs:
    """Images to score: ``ids`` and ``paths`` aligned; ``unreadable`` maps a position to its reason."""

    ids: list[str]
    paths: list[str]
    kind: str  # "kaggle" | "images"
    unreadable: dict[int, str] = field(default_factory=dict)
    expected_ids: list[str] | None = None  # the ids the written file must hold, in order


def images_under(folder: str | Path, cache_dir: str | Path | None = None) -> Inputs:
    """Every image file under ``folder`` (by suffix, recursively); ids are POSIX relative paths.

    Files are checked (fully decoded, results cached in ``cache_dir``) before scoring, so unreadable
    ones are known and reported whichever predictor scores the rest.
    """
    from fid_bench.data.validation import validate_files

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FidBenchError(f"--images {folder}: not a folder")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise FidBenchError(f"--images {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    ids = [p.relative_to(root).as_posix() for p in files]
    paths = [str(p.absolute()) for p in files]
    inputs = Inputs(ids=ids, paths=paths, kind="images", expected_ids=ids)
    checks = validate_files(paths, cache_dir=cache_dir, desc="checking images")
    inputs.unreadable = {i: c.message or c.reason for i, c in enumerate(checks) if not c.ok}
    return inputs


def _read_test_ids(test_csv: Path) -> list[str]:
    """The ids of test.csv exactly as written (strings, no NaN conversion), read like the reader reads them."""
    try:
        frame = pd.read_csv(test_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{test_csv}: not a readable CSV ({' '.join(str(err).split())})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "id" not in frame.columns:
        raise FidBenchError(f"{test_csv}: no 'id' column (found: {', '.join(frame.columns) or 'none'})")
    return frame["id"].tolist()


def _kaggle_predict_reader(root: Path, cache_dir: Path) -> Any:
    """``KaggleReader`` limited to the test.csv rows: only the images to score are decoded and checked
    (the training images are not needed to predict)."""
    from fid_bench.data.readers import KaggleReader

    class PredictRowsReader(KaggleReader):
        def rows(self) -> list:
            return [row for row in super().rows() if row.split == "predict"]

    return PredictRowsReader(root=root, strict=False, cache_dir=cache_dir)


def kaggle_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """The ``test.csv`` rows of a generated-or-not folder, in file order, none dropped."""
    root = Path(root).expanduser()
    test_csv = root / "test.csv"
    if not test_csv.is_file():
        raise FidBenchError(f"--root {root}: no test.csv (expected the generated-or-not layout)")
    expected = _read_test_ids(test_csv)
    if not expected:
        raise FidBenchError(f"{test_csv}: no ids to predict")
    dup = pd.Series(expected)[pd.Series(expected).duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(
            f"{test_csv}: {len(dup)} id(s) listed twice, e.g. {dup[:3]}; a submission needs each id once"
        )
    samples = _kaggle_predict_reader(root, Path(cache_dir)).read()
    table = samples.table[samples.table["split"] == "predict"].reset_index(drop=True)
    ids = table["id"].astype(str).tolist()
    if ids != expected:
        raise FidBenchError(
            f"{test_csv}: the reader returned {len(ids)} prediction rows for {len(expected)} ids "
            "(or another order); refusing to write a submission that does not match test.csv"
        )
    inputs = Inputs(ids=ids, paths=table["path"].astype(str).tolist(), kind="kaggle", expected_ids=expected)
    bad = samples.unreadable_predict
    reasons = dict(zip(bad["id"].astype(str), bad["reason"].astype(str), strict=True))
    for pos, (id_, path, sha1) in enumerate(zip(ids, inputs.paths, table["sha1"].astype(str), strict=True)):
        if id_ in reasons:
            inputs.unreadable[pos] = reasons[id_]
        elif not path or not sha1:  # no file, or a file the reader could not decode
            inputs.unreadable[pos] = "unreadable"
    return inputs


def folder_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """Every image of a class-folder data set (``FolderReader``), ids as the reader gives them (relative
    paths); files the reader skipped stay in, as unreadable."""
    from fid_bench.data.readers import FolderReader

    samples = FolderReader(root=Path(root).expanduser(), strict=False, cache_dir=Path(cache_dir)).read()
    good = samples.table[["id", "path"]].assign(reason="")
    bad = samples.skipped[["id", "path", "reason"]]
    rows = (
        pd.concat([good, bad], ignore_index=True).sort_values("id", kind="mergesort").reset_index(drop=True)
    )
    if rows.empty:
        raise FidBenchError(f"--root {root}: no images")
    ids = rows["id"].astype(str).tolist()
    inputs = Inputs(ids=ids, paths=rows["path"].astype(str).tolist(), kind="images", expected_ids=ids)
    inputs.unreadable = {i: str(r) for i, r in enumerate(rows["reason"]) if r}
    return inputs


# --------------------------------------------------------------------------- scoring


_DECODE_FAILURES = (FidBenchError, OSError, ValueError)


def predict_all(
    predictor: Predictor, inputs: Inputs, *, batch_size: int = 1024, progress: bool = True
) -> np.ndarray:
    """Score every readable input in batches; unreadable ones get ``predictor.prior``.

    A batch that fails on a bad file is retried image by image, so one broken file costs only itself;
    a NaN score is treated the same way. Newly found failures are added to ``inputs.unreadable``.
    """
    from tqdm import tqdm

    prior = float(getattr(predictor, "prior", 0.5))
    scores = np.full(len(inputs.ids), np.nan, dtype=np.float64)
    todo = [i for i in range(len(inputs.ids)) if i not in inputs.unreadable]
    with tqdm(total=len(todo), unit="img", desc="predict", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                out = _checked(predictor.predict_paths([inputs.paths[i] for i in batch]), len(batch))
            except _DECODE_FAILURES as err:
                log.debug("batch at %d failed (%s); scoring its images one by one", start, err)
                out = np.array([_predict_one(predictor, inputs, i) for i in batch])
            scores[batch] = out
            _note_reported_unreadable(predictor, inputs, batch)
            bar.update(len(batch))
    for i in np.flatnonzero(np.isnan(scores)):
        inputs.unreadable.setdefault(int(i), "no score")
    scores[list(inputs.unreadable)] = prior
    return scores


def _note_reported_unreadable(predictor: Predictor, inputs: Inputs, batch: list[int]) -> None:
    """Predictors that score unreadable images themselves list them as ``unreadable`` (path, reason)."""
    reported = getattr(predictor, "unreadable", None) or []
    if not reported:
        return
    by_path: dict[str, list[int]] = {}
    for i in batch:
        by_path.setdefault(inputs.paths[i], []).append(i)
    for path, reason in reported:
        for i in by_path.get(str(path), []):
            inputs.unreadable[i] = " ".join(str(reason).split())


def _checked(out: Any, n: int) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise FidBenchError(f"the model returned {arr.size} scores for {n} images")
    return arr


def _predict_one(predictor: Predictor, inputs: Inputs, i: int) -> float:
    try:
        return float(_checked(predictor.predict_paths([inputs.paths[i]]), 1)[0])
    except _DECODE_FAILURES as err:
        inputs.unreadable[i] = " ".join(str(err).split()) or type(err).__name__
        return math.nan


# --------------------------------------------------------------------------- writing and validating


def build_output(inputs: Inputs, scores: np.ndarray, predictor: Predictor, *, labels: bool) -> pd.DataFrame:
    threshold = float(getattr(predictor, "threshold", 0.5))
    if not math.isfinite(threshold):
        raise FidBenchError(f"the run's stored threshold is {threshold}; cannot write 0/1 labels")
    predicted = (scores >= threshold).astype(np.int64)
    if inputs.kind == "kaggle":
        return pd.DataFrame({"id": inputs.ids, "target": predicted if labels else scores})
    return pd.DataFrame({"id": inputs.ids, "path": inputs.paths, "score": scores, "label": predicted})


def value_checks(columns: Sequence[str], *, labels: bool) -> dict[str, bool]:
    """``{column: must_be_0_or_1}`` for the value columns of an output table."""
    if "target" in columns:  # Kaggle submission
        return {"target": labels}
    return {"score": False, "label": True}


def validate_output(path: Path, expected_ids: Sequence[str], checks: dict[str, bool]) -> int:
    """Re-read a written file: every id once, in order; values in [0, 1] (0 or 1 for label columns)."""
    try:
        df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise FidBenchError(f"{path}: written file cannot be read back ({err})") from None
    if len(df) != len(expected_ids):
        raise FidBenchError(f"{path}: {len(df)} rows written for {len(expected_ids)} ids")
    dup = df["id"][df["id"].duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(f"{path}: {len(dup)} duplicate id(s), e.g. {dup[:5]}")
    if df["id"].tolist() != list(expected_ids):
        raise FidBenchError(f"{path}: ids differ from the input ids or their order")
    for column, binary in checks.items():
        if column not in df.columns:
            raise FidBenchError(f"{path}: column {column!r} missing")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if binary:
            bad |= ~np.isin(values, (0.0, 1.0))
        if bad.any():
            raise FidBenchError(f"{path}: {int(bad.sum())} {column} value(s) out of range")
    return len(df)


def write_output(df: pd.DataFrame, out: Path, expected_ids: Sequence[str], *, labels: bool) -> None:
    """Write next to ``out``, validate, then move into place: a bad file never replaces a good one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    try:
        validate_output(tmp, expected_ids, value_checks(df.columns, labels=labels))
    except FidBenchError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def report_unreadable(inputs: Inputs, out: Path, prior: float) -> Path | None:
    if not inputs.unreadable:
        return None
    listing = out.with_name(f"{out.stem}.unreadable.csv")
    rows = sorted(inputs.unreadable.items())
    pd.DataFrame(
        {
            "id": [inputs.ids[i] for i, _ in rows],
            "path": [inputs.paths[i] for i, _ in rows],
            "reason": [r for _, r in rows],
        }
    ).to_csv(listing, index=False)
    print(
        f"{len(rows)} image(s) could not be read and got the training prior {prior:.4f}"
        f" (all listed in {listing}):"
    )
    for i, reason in rows[:SHOW_UNREADABLE]:
        print(f"  {inputs.ids[i]}: {reason}")
    if len(rows) > SHOW_UNREADABLE:
        print(f"  ... and {len(rows) - SHOW_UNREADABLE} more")
    return listing


# --------------------------------------------------------------------------- command line


class UsageError(FidBenchError):
    """Arguments that do not fit together (exit code 2, like argparse's own errors)."""

    exit_code = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fid-bench predict`` (also ``python -m fid_bench.predict``)."""
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", help="run id, or 'best': the best finished run of --experiment by --metric")
    model.add_argument(
        "--model-uri",
        "--model",
        help="an MLflow model URI (runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS) "
        "or a model folder inside the store",
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--images", metavar="DIR", help="score every image file under DIR (ids = relative paths)"
    )
    data.add_argument("--data", choices=("kaggle", "folder"), help="read --root with this data set's reader")
    p.add_argument("--root", metavar="DIR", help="data set folder for --data")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")
    p.add_argument(
        "--labels",
        action="store_true",
        help="Kaggle submission: target = 0/1 label at the run's stored threshold instead of the probability",
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="experiment of --run best (default: the only one with runs)"
    )
    p.add_argument(
        "--metric",
        default="roc_auc",
        help="metric ranking --run best (default: roc_auc; losses such as log_loss rank lowest first)",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
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
    p.set_defaults(handler=run_command)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("FID_BENCH_CACHE_DIR") or Path.home() / ".cache" / "fid_bench")


def _choose_feature_cache(predictor: Predictor, explicit: Path | None) -> None:
    """Embedding models extract features for new images through the training run's cache folder;
    ``--cache-dir`` overrides it, and an unusable stored folder (another machine) falls back to the
    default cache."""
    stored = getattr(predictor, "cache_dir", None)
    if stored is None:
        return  # a fine-tuned network has no feature cache
    if explicit is not None:
        predictor.cache_dir = str(explicit.expanduser())
        return
    try:
        Path(stored).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning(
            "feature cache %s of the run is unusable here (%s); using %s", stored, err, _default_cache_dir()
        )
        predictor.cache_dir = str(_default_cache_dir())


def check_arguments(args: argparse.Namespace) -> None:
    if args.data and not args.root:
        raise UsageError(f"--data {args.data} needs --root")
    if args.root and not args.data:
        raise UsageError("--root is read only with --data")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the CSV file to write")


def predict(args: argparse.Namespace) -> pd.DataFrame:
    """Run the command for parsed ``args``; returns the written table."""
    check_arguments(args)
    uri = tracking_uri(args.tracking_uri)
    cache_dir = (args.cache_dir or _default_cache_dir()).expanduser()

    # data problems show before any model is downloaded
    if args.images:
        inputs = images_under(args.images, cache_dir)
    elif args.data == "kaggle":
        inputs = kaggle_inputs(args.root, cache_dir)
    else:
        inputs = folder_inputs(args.root, cache_dir)

    client = make_client(uri)
    if args.run:
        run = resolve_run(client, args.run, experiment=args.experiment, metric=args.metric)
        model_uri = f"runs:/{run.info.run_id}/{MODEL_NAME}"
        locations = logged_model_locations(client, run)
    else:
        model_uri = pin_alias(client, args.model_uri)
        locations, _ = model_uri_locations(client, model_uri)
    predictor = load_checked_predictor(model_uri, locations, uri, allow_external=args.allow_external)
    _choose_feature_cache(predictor, args.cache_dir)

    scores = predict_all(predictor, inputs, batch_size=args.batch_size, progress=not args.no_progress)
    prior = float(getattr(predictor, "prior", 0.5))
    table = build_output(inputs, scores, predictor, labels=args.labels)
    write_output(table, args.out, inputs.expected_ids or inputs.ids, labels=args.labels)
    report_unreadable(inputs, args.out, prior)
    what = "0/1 labels" if args.labels and inputs.kind == "kaggle" else "scores"
    print(f"wrote {len(table)} {what} from {model_uri} to {args.out}")
    return table


def run_command(args: argparse.Namespace) -> int:
    predict(args)
    return 0


PROG = "fid-bench predict"
DESCRIPTION = "Score images with the model logged in a run (either track) and write a CSV."


def main(argv: list[str] | None = None) -> int:
    """``python -m fid_bench.predict``; returns the exit code (2 for bad arguments, 1 for other errors)."""
    from fid_bench.cli import run_standalone

    return run_standalone(PROG, DESCRIPTION, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
