"""The MLmodel escape, the Default experiment's folder and replaced ONNX files (issue 20, holes 1, 4, 10).

A model's files are checked where they come from (``tests/test_model_location.py``), but its MLmodel
file then names further paths: MLflow's loader joins them onto the copied folder, so an absolute or
``../`` path, a ``code`` folder or a ``loader_module`` loads whatever they name. Each attack plants a
pickle or a module that creates a "canary" file when it runs, edits the genuine model's MLmodel to
name it, and checks every route that loads a model (``predict --run``, ``models:/NAME@alias``,
``models:/<logged model id>``, ``fid-bench ensemble``): one refusing line, no canary.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fid_bench.commands.ensemble_command import main as ensemble_main
from fid_bench.commands.predict_command import main as predict_main
from fid_bench.tracking.kinds import KIND_TAG
from tests.tracking_support import BrightnessPredictor, grey_image


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri():
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


class _Payload:
    """Unpickling this runs code: it creates the canary file (what a malicious pickle would do)."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (exec, (f"open({self.canary!r}, 'w').close()",))


def _client():
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return mlflow.MlflowClient()


def _images(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    grey_image(root / "a_dark.png", 0)
    grey_image(root / "b_light.png", 255)
    return root


def _scored_run(experiment_id: str, seed: int) -> tuple[str, str, Path]:
    """A finished job run with a genuine model and a ``predictions.csv`` (validation and test rows with
    content hashes), as a job logs them; returns (run id, logged model id, the logged model's folder)."""
    import mlflow

    from fid_bench.tracking.pyfunc import log_predictor_model

    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * 10)
    rows = pd.DataFrame(
        {
            "id": [f"img{i:02d}" for i in range(20)],
            "label": labels,
            "score": np.clip(labels * 0.4 + rng.uniform(0, 0.6, 20), 0, 1),
            "split": ["val"] * 10 + ["test"] * 10,
            "group": "",
            "fold": 0,
            "sha1": [f"{i:040x}" for i in range(20)],
        }
    )
    client = _client()
    with mlflow.start_run(experiment_id=experiment_id, tags={KIND_TAG: "job"}) as run:
        log_predictor_model(BrightnessPredictor(), run.info.run_id)
        mlflow.log_metrics({"roc_auc": 0.9, "threshold": 0.5})
        path = Path(f"predictions-{seed}.csv").absolute()
        rows.to_csv(path, index=False)
        client.log_artifact(run.info.run_id, str(path))
    (model,) = [
        m
        for m in client.search_logged_models(experiment_ids=[experiment_id], max_results=1000)
        if m.source_run_id == run.info.run_id
    ]
    # the artifact was logged under its own name: give it the name runs are read by
    art = Path(client.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://"))
    (art / path.name).rename(art / "predictions.csv")
    return run.info.run_id, model.model_id, Path(model.artifact_location.removeprefix("file://"))


def _experiment(tmp_path: Path, name: str = "exp") -> str:
    return _client().create_experiment(
        name, artifact_location=(tmp_path / "mlruns" / "artifacts" / name).as_uri()
    )


def _register(run_id: str, model_id: str) -> None:
    client = _client()
    client.create_registered_model("detector")
    version = client.create_model_version("detector", f"models:/{model_id}", run_id=run_id).version
    client.set_registered_model_alias("detector", "champion", version)


def _predict(argv: list[str], images: Path, out: Path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = predict_main([*argv, "--images", str(images), "--out", str(out), "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def _edit_mlmodel(model_dir: Path, old: str, new: str) -> None:
    mlmodel = model_dir / "MLmodel"
    text = mlmodel.read_text()
    assert old in text, text
    mlmodel.write_text(text.replace(old, new))


# --------------------------------------------------------------------------- hole 1: the MLmodel escape


def _plant(kind: str, model_dir: Path, elsewhere: Path, canary: Path) -> None:
    """Edit the genuine model's MLmodel so that loading it the way MLflow does runs planted code."""
    elsewhere.mkdir(parents=True, exist_ok=True)
    (elsewhere / "evil.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    if kind == "absolute artifact path":
        _edit_mlmodel(model_dir, "path: artifacts/predictor.pkl", f"path: {elsewhere / 'evil.pkl'}")
    elif kind == "dot-dot artifact path":
        # enough '..' to reach / from wherever the model is copied to, then down to the pickle
        _edit_mlmodel(
            model_dir, "path: artifacts/predictor.pkl", f"path: {'../' * 30}{elsewhere / 'evil.pkl'}"
        )
    elif kind == "code and loader_module":
        code = elsewhere / "code"
        code.mkdir()
        (code / "fid_evil_loader.py").write_text(
            f"open({str(canary)!r}, 'w').close()\ndef _load_pyfunc(path, config=None):\n    raise RuntimeError(\"planted\")\n"
        )
        _edit_mlmodel(model_dir, "code: null", f"code: {code}")
        _edit_mlmodel(
            model_dir, "loader_module: mlflow.pyfunc.loaders.code_model", "loader_module: fid_evil_loader"
        )
    elif kind == "data folder":
        # MLflow hands the loader the data folder, and runs the model code it finds there
        shutil.copytree(model_dir, elsewhere / "data")
        (elsewhere / "data" / "fid_bench_model.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
        _edit_mlmodel(
            model_dir,
            "loader_module: mlflow.pyfunc.loaders.code_model",
            f"data: {elsewhere / 'data'}\n    loader_module: mlflow.pyfunc.loaders.code_model",
        )
    elif kind == "python_env":
        (elsewhere / "python_env.yaml").write_text("python: 3.11\n")
        _edit_mlmodel(
            model_dir, "virtualenv: python_env.yaml", f"virtualenv: {elsewhere / 'python_env.yaml'}"
        )
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "absolute artifact path",
        "dot-dot artifact path",
        "code and loader_module",
        "data folder",
        "python_env",
    ],
)
def test_a_path_the_mlmodel_names_outside_the_copy_is_refused_on_every_route(
    tmp_path: Path, capsys, kind: str
) -> None:
    exp = _experiment(tmp_path)
    run_id, model_id, model_dir = _scored_run(exp, seed=1)
    other_id, _, _ = _scored_run(exp, seed=2)
    _register(run_id, model_id)
    canary = tmp_path / "pwned"
    _plant(kind, model_dir, tmp_path / "elsewhere", canary)

    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for argv in (
        ["--run", run_id],
        ["--model-uri", "models:/detector@champion"],
        ["--model-uri", f"models:/{model_id}"],
    ):
        code, err = _predict(argv, images, out, capsys)
        assert not canary.exists(), f"{kind} via {argv}: the planted code ran ({err})"
        assert code == 1 and len(err) == 1, (argv, err)
        assert "MLmodel" in err[0] and "outside the model's own files" in err[0], err
        assert not out.exists()

    capsys.readouterr()
    code = ensemble_main([run_id, other_id, "--method", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    assert not canary.exists(), f"{kind} via ensemble: the planted code ran ({err})"
    assert code == 1 and len(err) == 1 and "outside the model's own files" in err[0], err
    assert len(_client().search_runs([exp])) == 2  # no ensemble run left behind


def test_a_genuine_model_still_loads_on_every_route(tmp_path: Path, capsys) -> None:
    exp = _experiment(tmp_path)
    run_id, model_id, _ = _scored_run(exp, seed=1)
    other_id, _, _ = _scored_run(exp, seed=2)
    _register(run_id, model_id)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for argv in (
        ["--run", run_id],
        ["--model-uri", "models:/detector@champion"],
        ["--model-uri", f"models:/{model_id}"],
    ):
        code, err = _predict(argv, images, out, capsys)
        assert code == 0, (argv, err)
        assert pd.read_csv(out)["score"].tolist() == pytest.approx([0.0, 1.0])
        out.unlink()
    assert ensemble_main([run_id, other_id, "--method", "mean"]) == 0


def test_a_model_folder_loads_directly_and_through_its_mlflow_wrapper(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fid_bench.tracking.model_location import PREDICTOR_ARTIFACT
    from fid_bench.tracking.pyfunc import PredictorModel, load_predictor

    exp = _experiment(tmp_path)
    _, _, model_dir = _scored_run(exp, seed=1)
    copy = tmp_path / "copied_model"
    shutil.copytree(model_dir, copy)
    images = sorted(str(p) for p in _images(tmp_path / "imgs").iterdir())
    predictor = load_predictor(str(copy))  # a folder is read in place, not looked up as a run
    assert predictor.predict_paths(images).tolist() == pytest.approx([0.0, 1.0])
    (pickled,) = copy.rglob("*.pkl")
    wrapper = PredictorModel()
    wrapper.load_context(SimpleNamespace(artifacts={PREDICTOR_ARTIFACT: str(pickled)}))
    frame = wrapper.predict(None, pd.DataFrame({"path": images}))
    assert frame["score"].tolist() == pytest.approx([0.0, 1.0]) and frame["label"].tolist() == [0, 1]


def test_a_foreign_loader_inside_the_copy_is_not_a_fid_bench_model(tmp_path: Path, capsys) -> None:
    """A loader_module other than the one fid_bench logs is never imported, even with nothing outside."""
    exp = _experiment(tmp_path)
    run_id, _, model_dir = _scored_run(exp, seed=1)
    _edit_mlmodel(
        model_dir, "loader_module: mlflow.pyfunc.loaders.code_model", "loader_module: mlflow.sklearn"
    )
    code, err = _predict(["--run", run_id], _images(tmp_path / "imgs"), tmp_path / "p.csv", capsys)
    assert code == 1 and len(err) == 1 and "not a fid_bench model" in err[0], err


# --------------------------------------------------------------------------- ensemble members, trusted roots


def test_an_ensemble_member_outside_the_store_is_refused_without_an_escape_hatch(
    tmp_path: Path, capsys
) -> None:
    """The ensemble embeds its members' pickles: a member's model outside the store is refused (never
    loaded as --allow-external would), and the line does not suggest --allow-external, which
    ``ensemble`` does not have."""
    exp = _experiment(tmp_path)
    run_id, model_id, model_dir = _scored_run(exp, seed=1)
    other_id, _, _ = _scored_run(exp, seed=2)
    canary = tmp_path / "pwned"
    evil = tmp_path / "elsewhere" / "model"
    shutil.copytree(model_dir, evil)
    (evil / "artifacts" / "predictor.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    db = os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(
            "UPDATE logged_models SET artifact_location = ? WHERE model_id = ?", (evil.as_uri(), model_id)
        )
        conn.commit()
    capsys.readouterr()
    code = ensemble_main([run_id, other_id, "--method", "stack"])
    err = capsys.readouterr().err.strip().splitlines()
    assert not canary.exists(), err
    assert code == 1 and len(err) == 1, err
    assert "outside the tracking store" in err[0] and "--allow-external" not in err[0], err
    assert len(_client().search_runs([exp])) == 2


def test_a_sibling_folder_sharing_a_roots_name_prefix_is_not_inside_it(tmp_path: Path) -> None:
    """Root ``.../exp`` does not contain ``.../exp-evil`` (a string-prefix test would say it does)."""
    from fid_bench.tracking.model_location import StoreRoots, location_problem

    root = (tmp_path / "artifacts" / "exp").resolve()
    roots = StoreRoots(local=(root,))
    assert location_problem(str(root / "1" / "model"), roots) is None
    for sibling in (tmp_path / "artifacts" / "exp-evil" / "model", tmp_path / "artifacts" / "expx"):
        assert location_problem(str(sibling), roots) is not None, sibling


def test_a_file_of_the_model_linking_to_a_sibling_folder_of_the_model_is_refused(
    tmp_path: Path, capsys
) -> None:
    """The model's own folder bounds its links: ``artifacts-evil`` beside ``artifacts`` is outside it."""
    exp = _experiment(tmp_path)
    run_id, _, model_dir = _scored_run(exp, seed=1)
    canary = tmp_path / "pwned"
    sibling = model_dir.parent / (model_dir.name + "-evil")
    sibling.mkdir()
    (sibling / "predictor.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    pickle_file = model_dir / "artifacts" / "predictor.pkl"
    pickle_file.unlink()
    os.symlink(sibling / "predictor.pkl", pickle_file)
    code, err = _predict(["--run", run_id], _images(tmp_path / "imgs"), tmp_path / "p.csv", capsys)
    assert not canary.exists() and code == 1 and "outside the model's folder" in err[0], err


# --------------------------------------------------------------------------- --experiment with a run id


def test_experiment_given_with_a_run_id_of_another_experiment_is_refused(tmp_path: Path, capsys) -> None:
    exp = _experiment(tmp_path)
    _experiment(tmp_path, "other")
    run_id, _, _ = _scored_run(exp, seed=1)
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    code, err = _predict(["--run", run_id, "--experiment", "other"], images, out, capsys)
    assert code == 1 and len(err) == 1 and "'exp'" in err[0] and "'other'" in err[0], err
    assert not out.exists()
    code, err = _predict(["--run", run_id, "--experiment", "exp"], images, out, capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- hole 10: the Default experiment


def test_the_default_experiments_implicit_folder_is_not_trusted(tmp_path: Path, capsys, monkeypatch) -> None:
    """MLflow gives its Default experiment ``<working folder of whoever made the store>/mlruns/0``; a model
    planted there is refused unless the harness declared that folder by logging into Default."""
    import mlflow

    from fid_bench.tracking.pyfunc import log_predictor_model
    from fid_bench.tracking.store import open_experiment

    work = tmp_path / "shared_work"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = _client()
    default = client.get_experiment("0")
    assert Path(default.artifact_location.removeprefix("file://")) == work / "mlruns" / "0"

    exp = _experiment(tmp_path)
    _, _, model_dir = _scored_run(exp, seed=1)
    canary = tmp_path / "pwned"
    evil = work / "mlruns" / "0" / "evilmodel"
    shutil.copytree(model_dir, evil)
    (evil / "artifacts" / "predictor.pkl").write_bytes(pickle.dumps(_Payload(canary)))
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    for model in (str(evil), "mlruns/0/evilmodel", evil.as_uri()):
        code, err = _predict(["--model-uri", model], images, out, capsys)
        assert not canary.exists(), (model, err)
        assert code == 1 and len(err) == 1 and "refusing to load the model" in err[0], (model, err)

    # jobs told to log into Default declare its folder: their models load
    monkeypatch.chdir(tmp_path)
    _, experiment_id, _ = open_experiment(uri, "Default")
    assert experiment_id == "0"
    with mlflow.start_run(experiment_id="0") as run:
        log_predictor_model(BrightnessPredictor(), run.info.run_id)
    code, err = _predict(["--run", run.info.run_id], images, out, capsys)
    assert code == 0, err
    assert not canary.exists()


# --------------------------------------------------------------------------- hole 4: a replaced ONNX file


def test_predict_refuses_an_onnx_file_replaced_since_training(compose_cfg, tmp_path: Path, capsys) -> None:
    """A ``model=onnx`` run's graph replaced at its path: predict names the logged and the current sha256
    in one line instead of scoring with other features."""
    import hashlib

    import mlflow

    from fid_bench.jobs.experiment import run_job
    from tests.test_onnx import W_EMBED, tiny_graph

    graph = tiny_graph(tmp_path / "enc.onnx")
    logged = hashlib.sha256(graph.read_bytes()).hexdigest()
    cfg = compose_cfg(
        "model=onnx", f"model.path={graph}", "model.image_size=8", "model.resize=squash", "classifier=logreg",
        "eval.bootstrap=0", "audit.enabled=false",
    )  # fmt: skip
    run_job(cfg)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    images, out = _images(tmp_path / "imgs"), tmp_path / "p.csv"
    code, err = _predict(["--run", run.info.run_id], images, out, capsys)
    assert code == 0, err
    out.unlink()

    tiny_graph(graph, w_embed=W_EMBED[::-1].copy())  # same path, other weights
    now = hashlib.sha256(graph.read_bytes()).hexdigest()
    assert now != logged
    code, err = _predict(["--run", run.info.run_id], images, out, capsys)
    assert code == 1 and len(err) == 1, err
    assert logged in err[0] and now in err[0] and str(graph) in err[0], err
    assert not out.exists()
    assert run.data.params["model_file_sha256"] == logged  # the run says which file it was trained with
