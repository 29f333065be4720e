"""Where ``fid-bench predict`` may unpickle a model from (issue 9, security holes 1-4).

Trusted: the artifact roots the tracking store declares (its experiments' ``artifact_location``s, a
server's ``mlflow-artifacts``). Refused: everything else. The attacks below plant a model whose pickle
creates a "canary" file when it is unpickled, point the store at it the way a tampered or careless
store would, and check that the command refuses with one line and that the canary never appears.
Models are logged directly through the client (no training), so each test takes a few seconds.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from fid_bench.commands.predict_command import main
from fid_bench.errors import FidBenchError
from fid_bench.tracking.kinds import KIND_TAG
from fid_bench.tracking.model_location import (
    StoreRoots,
    check_model_location,
    declared_artifact_locations,
    location_problem,
    model_uri_locations,
    store_roots,
)
from tests.tracking_support import BrightnessPredictor, grey_image

#: what BrightnessPredictor gives for the images of ``_images`` (dark, light), with the prior (0.25)
#: for the unreadable one
SCORES = [0.0, 1.0, 0.25]


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri():
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


# --------------------------------------------------------------------------- helpers


def _uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


def _sql(query: str, *args: object) -> None:
    """Edit the store's database directly, as someone with write access to the file could."""
    with closing(sqlite3.connect(_uri().removeprefix("sqlite:///"))) as conn:
        conn.execute(query, args)
        conn.commit()


def _client():
    import mlflow

    mlflow.set_tracking_uri(_uri())
    return mlflow.MlflowClient()


def _experiment(name: str, location: Path) -> str:
    return _client().create_experiment(name, artifact_location=location.as_uri())


def _log_run(experiment_id: str, metrics: dict[str, float]) -> tuple[str, str, Path]:
    """A finished job run holding a genuine BrightnessPredictor model; returns (run id, logged model id,
    the logged model's folder)."""
    import mlflow

    from fid_bench.tracking.pyfunc import log_predictor_model

    client = _client()
    with mlflow.start_run(experiment_id=experiment_id, tags={KIND_TAG: "job"}) as run:
        log_predictor_model(BrightnessPredictor(), run.info.run_id)
        mlflow.log_metrics(metrics)
    (model,) = [
        m
        for m in client.search_logged_models(experiment_ids=[experiment_id], max_results=1000)
        if m.source_run_id == run.info.run_id
    ]
    return run.info.run_id, model.model_id, Path(model.artifact_location.removeprefix("file://"))


class _Payload:
    """Unpickling this runs code: it creates the canary file (what a malicious pickle would do)."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (exec, (f"open({self.canary!r}, 'w').close()",))


def _evil_copy(model_dir: Path, dest: Path, canary: Path) -> Path:
    """A copy of a genuine model whose pickle creates ``canary`` when loaded."""
    shutil.copytree(model_dir, dest)
    (dest / "artifacts" / "predictor.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    return dest


def _images(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    grey_image(root / "a_dark.png", 0)
    grey_image(root / "b_light.png", 255)
    (root / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _predict(argv: list[str], images: Path, out: Path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main([*argv, "--images", str(images), "--out", str(out), "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def _assert_refused(
    argv: list[str], images: Path, out: Path, canary: Path, capsys, why: str = "outside the tracking store"
) -> str:
    code, err = _predict(argv, images, out, capsys)
    assert not canary.exists(), f"{argv}: the planted pickle ran ({err})"
    assert code == 1, (argv, err)
    assert len(err) == 1 and "refusing to load the model" in err[0] and "--allow-external" in err[0], err
    assert why in err[0], err
    assert not out.exists()
    return err[0]


def _assert_loads(argv: list[str], images: Path, out: Path, capsys) -> None:
    code, err = _predict(argv, images, out, capsys)
    assert code == 0, (argv, err)
    assert pd.read_csv(out)["score"].tolist() == pytest.approx(SCORES)
    out.unlink()


# --------------------------------------------------------------------------- which roots are trusted


def test_store_roots_are_exactly_what_its_experiments_declare(tmp_path: Path) -> None:
    """Hole 3, at the level of the roots: not the SQLite file's folder, not ./mlruns/artifacts, not a
    relative root; symlinks resolved; a declared bucket prefix is a root too (whole segments only)."""
    client = _client()
    declared = tmp_path / "mlruns" / "artifacts" / "exp"
    _experiment("exp", declared)
    client.create_experiment("bucket", artifact_location="s3://bucket/fid")
    gone = client.create_experiment("gone", artifact_location=(tmp_path / "old").as_uri())
    client.delete_experiment(gone)

    roots = store_roots(_uri(), client)
    assert declared.resolve() in roots.local
    assert (tmp_path / "old").resolve() in roots.local  # a deleted experiment's files are still the store's
    assert tmp_path.resolve() / "mlruns" not in roots.local  # the folder holding mlflow.db
    assert roots.remote == ("s3://bucket/fid",) and roots.server is None

    assert location_problem((declared / "1" / "model").as_uri(), roots) is None
    assert location_problem(str(declared / "models" / "m-1" / "artifacts"), roots) is None
    # next to the database, and ./mlruns/artifacts of the working directory, but not declared
    for other in (tmp_path / "mlruns" / "other" / "model", Path.cwd() / "mlruns" / "artifacts" / "x"):
        problem = location_problem(str(other), roots)
        assert problem is not None and "outside the tracking store" in problem
    # '..' cannot climb out of a root, a link inside a root cannot lead out of it
    assert location_problem(str(declared / ".." / ".." / "elsewhere" / "model"), roots) is not None
    (tmp_path / "elsewhere").mkdir()
    declared.mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", declared / "link")
    assert location_problem(str(declared / "link" / "model"), roots) is not None
    # a relative location would be read from wherever predict runs
    assert "relative" in location_problem("mlruns/artifacts/exp/model", roots)
    # storage the store declares is trusted below its prefix only
    assert location_problem("s3://bucket/fid/1/abc/artifacts/model", roots) is None
    for bad in ("s3://bucket/fidx/model", "s3://bucket/fid/../x/model", "s3://other/fid/model"):
        assert location_problem(bad, roots) is not None, bad
    assert location_problem("mlflow-artifacts:/0/abc/artifacts/model", roots) is not None


def test_a_symlinked_root_is_trusted_where_it_really_is(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "artifacts"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "art")
    _experiment("linked", tmp_path / "art" / "linked")
    roots = store_roots(_uri(), _client())
    assert (real / "linked") in roots.local
    assert location_problem(str(real / "linked" / "model"), roots) is None
    assert location_problem(str(tmp_path / "art" / "linked" / "model"), roots) is None


class _Experiments:
    """A client stub answering search_experiments in pages (as a tracking server would)."""

    def __init__(self, *pages: list[str]) -> None:
        self.pages = pages

    def search_experiments(self, view_type=None, page_token=None):
        from mlflow.store.entities.paged_list import PagedList

        i = int(page_token or 0)
        token = str(i + 1) if i + 1 < len(self.pages) else None
        return PagedList([SimpleNamespace(artifact_location=loc) for loc in self.pages[i]], token)


def test_every_page_of_experiments_declares_roots() -> None:
    client = _Experiments(["/srv/a"], ["/srv/b"], ["mlflow-artifacts:/3"])
    assert declared_artifact_locations(client) == ["/srv/a", "/srv/b", "mlflow-artifacts:/3"]
    roots = store_roots("sqlite:////srv/x.db", client)
    assert roots.local == (Path("/srv/a"), Path("/srv/b"))


def test_server_store_accepts_only_what_it_serves() -> None:
    roots = store_roots("http://127.0.0.1:5005", _Experiments(["mlflow-artifacts:/1"]))
    assert roots.server == "http://127.0.0.1:5005" and roots.local == () and roots.remote == ()
    assert location_problem("mlflow-artifacts:/1/abc/artifacts/model", roots) is None
    assert location_problem("mlflow-artifacts://127.0.0.1:5005/1/abc/artifacts/model", roots) is None
    assert location_problem("mlflow-artifacts://10.0.0.1:80/1/x", roots) is not None
    assert location_problem("/tmp/model", roots) is not None
    assert location_problem("file:///tmp/model", roots) is not None
    # a server without artifact proxying: the local root it declares (a shared file system)
    roots = store_roots("http://127.0.0.1:5005", _Experiments(["/shared/mlruns/1"]))
    assert location_problem("/shared/mlruns/1/abc/artifacts/model", roots) is None
    assert location_problem("/shared/other/model", roots) is not None


def test_refusal_is_one_line_naming_the_escape_hatch(tmp_path: Path) -> None:
    roots = StoreRoots(local=(tmp_path.resolve() / "store",))
    with pytest.raises(FidBenchError) as err:
        check_model_location([str(tmp_path / "evil" / "model")], roots, allow_external=False)
    msg = str(err.value)
    assert "\n" not in msg and "--allow-external" in msg and "code" in msg
    check_model_location([str(tmp_path / "evil" / "model")], roots, allow_external=True)  # a warning only


def test_allowing_an_outside_model_warns_naming_the_location(tmp_path: Path, caplog) -> None:
    roots = StoreRoots(local=(tmp_path.resolve() / "store",))
    outside = str(tmp_path / "evil" / "model")
    with caplog.at_level(logging.WARNING, logger="fid_bench.tracking.model_location"):
        check_model_location([outside], roots, allow_external=True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith("loading a model from outside the tracking store: ") and outside in warned[0]


# --------------------------------------------------------------------------- attacks through predict


def test_a_runs_model_is_checked_however_many_logged_models_the_experiment_has(
    tmp_path: Path, capsys
) -> None:
    """Hole 1: over 100 newer logged models named ``model`` push an older run's model off the first page
    of ``search_logged_models``; its location must still be the one checked."""
    client = _client()
    exp = _experiment("deep", tmp_path / "mlruns" / "artifacts" / "deep")
    old_run, model_id, model_dir = _log_run(exp, {"roc_auc": 0.99})
    canary = tmp_path / "pwned"
    evil = _evil_copy(model_dir, tmp_path / "elsewhere" / "model", canary)
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", evil.as_uri(), model_id)

    newer = client.create_run(exp, tags={KIND_TAG: "job"})
    client.log_metric(newer.info.run_id, "roc_auc", 0.5)
    client.set_terminated(newer.info.run_id, "FINISHED")
    for _ in range(110):
        client.create_logged_model(exp, name="model", source_run_id=newer.info.run_id)

    # the premise: the first page does not list the old model, and MLflow's own loader reads it
    first = client.search_logged_models(experiment_ids=[exp], filter_string="name = 'model'")
    assert first.token and model_id not in {m.model_id for m in first}
    import mlflow

    fetched = Path(mlflow.artifacts.download_artifacts(f"runs:/{old_run}/model", dst_path=str(tmp_path)))
    assert (fetched / "artifacts" / "predictor.pkl").read_bytes() == pickle.dumps(_Payload(canary))

    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for argv in (
        ["--run", old_run],
        ["--run", "best", "--experiment", "deep"],
        ["--model-uri", f"runs:/{old_run}/model"],
    ):
        _assert_refused(argv, images, out, canary, capsys)
    # the location checked is that exact model's
    assert evil.as_uri() in model_uri_locations(client, f"runs:/{old_run}/model")


def _registered(tmp_path: Path) -> tuple[str, Path, list[str]]:
    """Version 1 of registered model ``detector`` (alias ``champion``) from a run's logged model; returns
    (logged model id, its folder, the model URIs naming that version)."""
    client = _client()
    exp = _experiment("reg", tmp_path / "mlruns" / "artifacts" / "reg")
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.9})
    client.create_registered_model("detector")
    version = client.create_model_version("detector", f"models:/{model_id}", run_id=run_id).version
    assert str(version) == "1"
    client.set_registered_model_alias("detector", "champion", version)
    return model_id, model_dir, ["models:/detector/1", "models:/detector@champion", "models:/detector/latest"]


def test_a_registered_version_loads_by_version_alias_or_latest(tmp_path: Path, capsys) -> None:
    _, _, uris = _registered(tmp_path)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for uri in uris:
        _assert_loads(["--model-uri", uri], images, out, capsys)


def test_a_registered_version_is_checked_where_mlflow_downloads_it(tmp_path: Path, capsys) -> None:
    """Hole 2: ``models:/NAME/VERSION`` (and ``@ALIAS``, ``/latest``) download ``storage_location`` when
    it is set, whatever ``source`` says."""
    model_id, model_dir, uris = _registered(tmp_path)
    canary = tmp_path / "pwned"
    evil = _evil_copy(model_dir, tmp_path / "elsewhere" / "model", canary)
    _sql("UPDATE model_versions SET storage_location = ? WHERE name = 'detector'", evil.as_uri())
    client = _client()
    assert client.get_model_version("detector", "1").source == f"models:/{model_id}"  # still genuine
    assert client.get_model_version_download_uri("detector", "1") == evil.as_uri()
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for uri in uris:
        _assert_refused(["--model-uri", uri], images, out, canary, capsys)


def test_the_folder_holding_the_sqlite_file_is_not_trusted(tmp_path: Path, capsys) -> None:
    """Hole 3: a store at DIR/mlflow.db trusted all of DIR."""
    exp = _experiment("x", tmp_path / "mlruns" / "artifacts" / "x")
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.9})
    canary = tmp_path / "pwned"
    # next to the database file (tmp_path/mlruns/mlflow.db), but in no root the store declares
    evil = _evil_copy(model_dir, tmp_path / "mlruns" / "other" / "model", canary)
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", evil.as_uri(), model_id)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    _assert_refused(["--run", run_id], images, out, canary, capsys)


def test_mlruns_artifacts_of_the_working_directory_is_trusted_only_if_declared(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Hole 3: ``./mlruns/artifacts`` under the working directory was trusted whatever the store."""
    exp = _experiment("x", tmp_path / "mlruns" / "artifacts" / "x")
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.9})
    work = tmp_path / "work"
    canary = tmp_path / "pwned"
    evil = _evil_copy(model_dir, work / "mlruns" / "artifacts" / "x" / "model", canary)
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", evil.as_uri(), model_id)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    monkeypatch.chdir(work)
    _assert_refused(["--run", run_id], images, out, canary, capsys)

    # the same folder declared by the store (an experiment lives there): a model there loads
    declared = _experiment("here", work / "mlruns" / "artifacts" / "here")
    here_run, _, _ = _log_run(declared, {"roc_auc": 0.5})
    _assert_loads(["--run", here_run], images, out, capsys)


def test_links_out_of_a_declared_root_are_refused(tmp_path: Path, capsys) -> None:
    """Hole 3: a symlink inside a trusted root that points outside it, as the model's folder or as a
    file inside it. A file of the model may link only within the model's own folder (MLflow's rule
    for local artifacts), not even elsewhere in the store."""
    root = tmp_path / "mlruns" / "artifacts" / "x"
    exp = _experiment("x", root)
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.9})
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    canary = tmp_path / "pwned"
    evil = _evil_copy(model_dir, tmp_path / "elsewhere" / "model", canary)
    pickle_file = model_dir / "artifacts" / "predictor.pkl"

    # a link to another file of the model's own folder: loads
    shutil.move(pickle_file, model_dir / "real.pkl")
    os.symlink(model_dir / "real.pkl", pickle_file)
    _assert_loads(["--run", run_id], images, out, capsys)

    # a link to a file elsewhere in the store's roots, then to one outside every root: refused
    stray = root / "stray.pkl"
    shutil.move(model_dir / "real.pkl", stray)
    for target in (stray, evil / "artifacts" / "predictor.pkl"):
        pickle_file.unlink()
        os.symlink(target, pickle_file)
        _assert_refused(["--run", run_id], images, out, canary, capsys, why="outside the model's folder")

    # the logged model's folder is a link (inside the root) to a folder outside it
    os.symlink(evil, root / "link")
    link = (root / "link").as_uri()
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", link, model_id)
    _assert_refused(["--run", run_id], images, out, canary, capsys)


def test_the_load_reads_the_checked_locations_not_the_uri_again(tmp_path: Path) -> None:
    """The predictor is loaded from copies of the locations that were checked: a store changed between
    the check and the load (the logged model redirected elsewhere) cannot slip another pickle in."""
    from fid_bench.predict import load_checked_predictor
    from fid_bench.tracking.run_queries import make_client

    exp = _experiment("race", tmp_path / "mlruns" / "artifacts" / "race")
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.9})
    client = make_client(_uri())
    model_uri = f"runs:/{run_id}/model"
    locations = model_uri_locations(client, model_uri)  # resolved and then checked
    canary = tmp_path / "pwned"
    evil = _evil_copy(model_dir, tmp_path / "elsewhere" / "model", canary)
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", evil.as_uri(), model_id)
    predictor = load_checked_predictor(model_uri, locations, client, _uri(), allow_external=False)
    assert isinstance(predictor, BrightnessPredictor) and not canary.exists()


def test_model_stored_outside_the_store_is_refused_unless_allowed(tmp_path: Path, capsys) -> None:
    exp = _experiment("ext", tmp_path / "mlruns" / "artifacts" / "ext")
    run_id, model_id, model_dir = _log_run(exp, {"roc_auc": 0.8})
    outside = tmp_path / "elsewhere" / "model"
    shutil.copytree(model_dir, outside)  # a genuine model, but not where the store keeps models
    _sql("UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", outside.as_uri(), model_id)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    not_a_canary = tmp_path / "never"
    for argv in (
        ["--run", run_id],
        ["--run", "best", "--experiment", "ext"],
        ["--model-uri", f"runs:/{run_id}/model"],
        ["--model-uri", str(outside)],  # a bare folder is outside too
        ["--model-uri", os.path.relpath(outside)],
    ):
        _assert_refused(argv, images, out, not_a_canary, capsys)
    # the user takes responsibility: a warning, and the model loads
    _assert_loads(["--run", run_id, "--allow-external"], images, out, capsys)
    _assert_loads(["--model-uri", str(outside), "--allow-external"], images, out, capsys)
    # ... and it is really loaded: a planted pickle runs; errors name the model, not the loaded copy
    canary = tmp_path / "ran"
    (outside / "artifacts" / "predictor.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    code, err = _predict(["--run", run_id, "--allow-external"], images, out, capsys)
    assert canary.exists() and code == 1
    assert err == [
        f"fid-bench predict: error: runs:/{run_id}/model is not a fid_bench model (no predictor with predict_paths inside)"
    ]


# --------------------------------------------------------------------------- genuine models load anywhere


def test_a_model_trained_in_one_folder_loads_from_any_other(
    compose_cfg, empty_store: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Item 4: a job run in folder A with the default settings (relative ``tracking.artifact_root``)
    writes an absolute experiment location, and predict run in folder B trusts it from the store."""
    import mlflow

    from fid_bench.tracking.job_run import JobRunSpec, tracked_run

    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    images = _images(tmp_path / "imgs")

    def train_in_a() -> str:
        monkeypatch.chdir(a)
        with tracked_run(JobRunSpec.of_config(compose_cfg(), track="features")) as run:
            run.log_predictor(BrightnessPredictor())
            run.client.log_metric(run.run_id, "roc_auc", 0.9)
        experiment = run.client.get_experiment(run.experiment_id)
        assert experiment.artifact_location == (a / "mlruns" / "artifacts" / "demo").resolve().as_uri()
        monkeypatch.chdir(b)
        return run.run_id

    # the store named by MLFLOW_TRACKING_URI lies outside A (tmp_path/mlruns/mlflow.db)
    run_id = train_in_a()
    _assert_loads(["--run", run_id], images, b / "p.csv", capsys)
    _assert_loads(["--run", "best", "--experiment", "demo"], images, b / "p.csv", capsys)

    # every default: no MLFLOW_TRACKING_URI, so the store is A/mlruns/mlflow.db; B names it explicitly
    shutil.copy(empty_store, a / "mlruns" / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)
    run_id = train_in_a()
    store = ["--tracking-uri", f"sqlite:///{a / 'mlruns' / 'mlflow.db'}"]
    _assert_loads(["--run", run_id, *store], images, b / "p.csv", capsys)


def test_roots_listing_names_three_then_counts_the_rest() -> None:
    from fid_bench.tracking.model_location import _describe_roots

    three = StoreRoots(remote=("s3://a", "s3://b", "s3://c"))
    assert _describe_roots(three) == "s3://a, s3://b, s3://c"
    assert (
        _describe_roots(StoreRoots(remote=(*three.remote, "s3://d"))) == "s3://a, s3://b, s3://c and 1 more"
    )


class _FakeClient:
    """The few MlflowClient calls ``model_uri_locations`` makes, answered from fixed values."""

    tracking_uri = "sqlite:///store.db"

    def get_run(self, run_id: str):
        from mlflow.exceptions import MlflowException

        if run_id != "r1":
            raise MlflowException(f"Run '{run_id}' not found\nmore detail")
        info = SimpleNamespace(artifact_uri="file:///art/r1", run_id="r1", experiment_id="0")
        return SimpleNamespace(info=info)

    def search_logged_models(self, **kwargs):
        return _Page(
            [SimpleNamespace(source_run_id="r1", artifact_location="file:///art/models/m-1/artifacts")]
        )

    def get_logged_model(self, model_id: str):
        return SimpleNamespace(artifact_location=f"file:///art/models/{model_id}/artifacts")

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return "models:/m-0123456789abcdef0123456789abcdef"  # a version registered from a logged model


class _Page(list):
    """One page of search results, the last one (no next-page token)."""

    token = None


def test_a_runs_uri_with_a_path_inside_the_model_reaches_both_locations() -> None:
    # runs:/RUN/model/sub is "sub" inside the run's artifacts/model and inside the logged model
    assert model_uri_locations(_FakeClient(), "runs:/r1/model/sub") == [
        "file:///art/r1/model/sub",
        "file:///art/models/m-1/artifacts/sub",
    ]


def test_a_logged_model_id_uri_is_its_artifact_location() -> None:
    assert model_uri_locations(_FakeClient(), "models:/m-0123456789abcdef0123456789abcdef") == [
        "file:///art/models/m-0123456789abcdef0123456789abcdef/artifacts"
    ]


def test_a_path_inside_a_registered_version_follows_it_to_the_logged_model() -> None:
    assert model_uri_locations(_FakeClient(), "models:/detector/1/sub") == [
        "file:///art/models/m-0123456789abcdef0123456789abcdef/artifacts/sub"
    ]


def test_unknown_run_is_one_line_naming_uri_and_store() -> None:
    with pytest.raises(FidBenchError) as err:
        model_uri_locations(_FakeClient(), "runs:/nope/model")
    assert (
        str(err.value) == "model URI 'runs:/nope/model' not found in sqlite:///store.db: Run 'nope' not found"
    )


def test_checked_files_are_copied_into_a_folder_not_yet_made(tmp_path: Path) -> None:
    from fid_bench.tracking.model_location import fetch_checked_model

    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "weights.bin").write_bytes(b"w")
    dst = tmp_path / "copy" / "of" / "model"  # none of these folders exist yet
    assert fetch_checked_model([src.as_uri()], dst, "sqlite:///x", allow_external=True)
    assert (dst / "sub" / "weights.bin").read_bytes() == b"w"
