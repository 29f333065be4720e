"""``fid-bench predict``: model location checks, image discovery, scoring with broken files, output checks,
and whole runs of both tracks predicted through the same command."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.commands.predict_command import main
from fid_bench.contract import Predictor
from fid_bench.data.inputs import Inputs, images_under
from fid_bench.errors import FidBenchError
from fid_bench.predict import predict_all
from fid_bench.submission import write_output


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri() -> Iterator[None]:
    """Jobs, model logging and loading set MLflow's process-wide URI: never leak a test's store."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


def _png(path: Path, value: int = 128, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)
    return path


def _truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


class BrightnessPredictor(Predictor):
    """Score = mean brightness; decodes every image like the real predictors (and fails like them)."""

    threshold = 0.5
    prior = 0.25

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_paths(self, paths: list[str]) -> np.ndarray:
        from fid_bench.data.decode import load_rgb

        self.calls.append(len(paths))
        return np.array([np.asarray(load_rgb(p), dtype=np.float64).mean() / 255.0 for p in paths])


# where a model may come from (and the attacks on it): tests/test_model_location.py


# --------------------------------------------------------------------------- inputs and scoring


def test_images_under_takes_every_image_with_relative_ids(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "b.png")
    _png(tmp_path / "imgs" / "sub" / "a.PNG")
    _truncated_jpeg(tmp_path / "imgs" / "sub" / "c.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    inputs = images_under(tmp_path / "imgs")
    assert inputs.ids == ["b.png", "sub/a.PNG", "sub/c.jpg"]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in inputs.paths)
    # checked before scoring: the truncated file is known to be unreadable, the others are not
    assert list(inputs.unreadable) == [2] and "truncated" in inputs.unreadable[2]
    with pytest.raises(FidBenchError, match="no image files"):
        images_under(_empty(tmp_path))
    with pytest.raises(FidBenchError, match="not a folder"):
        images_under(tmp_path / "missing")


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return tmp_path / "empty"


def test_broken_image_costs_only_itself_and_gets_the_prior(tmp_path: Path) -> None:
    paths = [_png(tmp_path / f"{i}.png", value=40 * i) for i in range(5)]
    paths.insert(2, _truncated_jpeg(tmp_path / "broken.jpg"))
    inputs = Inputs(ids=[p.name for p in paths], paths=[str(p) for p in paths], kind="images")
    inputs.unreadable[5] = "missing_file"  # known bad before scoring: never passed to the model
    predictor = BrightnessPredictor()

    scores = predict_all(predictor, inputs, batch_size=3, progress=False)

    assert sorted(inputs.unreadable) == [2, 5]
    assert "truncated" in inputs.unreadable[2]
    assert scores[2] == scores[5] == pytest.approx(0.25)
    expected = [0.0, 40 / 255, None, 80 / 255, 120 / 255, None]
    for i, e in enumerate(expected):
        if e is not None:
            assert scores[i] == pytest.approx(e)
    # first batch (3 images, one broken) was retried one by one; the second batch lost the known-bad row
    assert predictor.calls == [3, 1, 1, 1, 2]


def test_unreadable_reason_is_the_error_on_one_line_or_its_type(tmp_path: Path) -> None:
    """The reason listed for an image the model cannot read, word for word."""

    class Picky(Predictor):
        def predict_paths(self, paths: list[str]) -> np.ndarray:
            if any(p.endswith("a.png") for p in paths):
                raise OSError("cannot identify\n  image   file a.png")
            if any(p.endswith("b.png") for p in paths):
                raise ValueError()
            return np.full(len(paths), 0.5)

    names = ["a.png", "b.png", "c.png"]
    inputs = Inputs(ids=names, paths=[str(tmp_path / n) for n in names], kind="images")
    predict_all(Picky(), inputs, batch_size=3, progress=False)
    assert inputs.unreadable == {0: "cannot identify image file a.png", 1: "ValueError"}


def test_unreadable_reported_by_the_predictor_itself_is_listed(tmp_path: Path) -> None:
    class SelfReporting(Predictor):
        prior = 0.6

        def predict_paths(self, paths: list[str]) -> np.ndarray:
            self.unreadable = [(paths[1], "x: truncated")]
            return np.array([0.1, self.prior, 0.9])

    inputs = Inputs(ids=["a", "b", "c"], paths=["/a", "/b", "/c"], kind="images")
    scores = predict_all(SelfReporting(), inputs, progress=False)
    assert inputs.unreadable == {1: "x: truncated"}
    assert scores.tolist() == pytest.approx([0.1, 0.6, 0.9])


def test_written_file_is_validated_before_it_replaces_the_output(tmp_path: Path) -> None:
    out = tmp_path / "outs" / "sub.csv"
    out.parent.mkdir()
    out.write_text("id,target\nold,0.5\n")
    good = pd.DataFrame({"id": ["007", "a,b", "x"], "target": [0.1, 1.0, 0.0]})
    write_output(good, out, ["007", "a,b", "x"], labels=False)
    back = pd.read_csv(out, dtype={"id": str})
    assert back["id"].tolist() == ["007", "a,b", "x"]  # leading zeros and commas survive

    with pytest.raises(FidBenchError, match="duplicate"):
        write_output(pd.DataFrame({"id": ["a", "a"], "target": [0.1, 0.2]}), out, ["a", "a"], labels=False)
    with pytest.raises(FidBenchError, match="out of range"):
        write_output(pd.DataFrame({"id": ["a", "b"], "target": [0.1, 1.2]}), out, ["a", "b"], labels=False)
    with pytest.raises(FidBenchError, match="out of range"):
        write_output(pd.DataFrame({"id": ["a", "b"], "target": [0, 0.5]}), out, ["a", "b"], labels=True)
    images = pd.DataFrame({"id": ["a"], "path": ["/a"], "score": [0.5], "label": [2]})
    with pytest.raises(FidBenchError, match="1 label value"):
        write_output(images, out, ["a"], labels=False)
    with pytest.raises(FidBenchError, match="ids differ"):
        write_output(pd.DataFrame({"id": ["b", "a"], "target": [0.1, 0.2]}), out, ["a", "b"], labels=False)
    with pytest.raises(FidBenchError, match="rows written"):
        write_output(pd.DataFrame({"id": ["a"], "target": [0.1]}), out, ["a", "b"], labels=False)
    # the last good file is still there and no temporary file is left behind
    assert pd.read_csv(out, dtype={"id": str})["id"].tolist() == ["007", "a,b", "x"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["sub.csv"]


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--images", "x", "--out", "o.csv"], "--run"),
        (["--run", "best", "--out", "o.csv"], "--images"),
        (["--run", "best", "--data", "kaggle", "--out", "o.csv"], "needs --root"),
        (["--run", "best", "--images", "x", "--root", "r", "--out", "o.csv"], "only with --data"),
        (["--run", "best", "--images", "x", "--out", "o.csv", "--batch-size", "0"], "--batch-size"),
        (["--run", "a", "--model-uri", "b", "--images", "x", "--out", "o.csv"], "not allowed"),
        (["--run", "best", "--images", "x", "--out", "o.csv", "data=folder"], "not both"),
        (["--run", "best", "--out", "o.csv", "folder"], "'folder' is not an override"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and needle in err[0]


def test_help_exits_0(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--run", "--images", "--data", "--labels", "--allow-external", "--metric"):
        assert flag in out


# --------------------------------------------------------------------------- whole runs, both tracks

FINETUNE_TINY = [
    "model=small_cnn",
    "model.backbone.widths=[8,16]",
    "data.image_size=16",
    "trainer.max_epochs=1",
    "trainer.num_workers=0",
    "trainer.progress_bar=false",
    "classifier.batch_size=16",
    "classifier.decoded_cache=off",
]
# test.csv order on purpose not sorted; "007" checks that ids are written verbatim
TEST_IDS = ["t5", "007", "t1", "broken", "empty", "gone", "t3", "t2"]
UNREADABLE_IDS = {"broken", "empty", "gone"}


def kaggle_folder(root: Path, n_train: int = 48) -> Path:
    """A generated-or-not-style set: label 1 = 2x nearest-neighbour up-sampled noise, ids without
    extension; test.csv has a truncated image, a zero-byte image and an id with no file at all."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)

    def noise(label: int) -> np.ndarray:
        arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        return np.repeat(np.repeat(arr[::2, ::2], 2, axis=0), 2, axis=1) if label else arr

    train = [f"img{i},{i % 2}" for i in range(n_train)]
    for i in range(n_train):
        Image.fromarray(noise(i % 2)).save(images / f"img{i}.png")
    for k, id_ in enumerate(TEST_IDS):
        if id_ not in UNREADABLE_IDS:
            Image.fromarray(noise(k % 2)).save(images / f"{id_}.png")
    _truncated_jpeg(images / "broken.jpg")
    (images / "empty.png").write_bytes(b"")
    (root / "train.csv").write_text("id,target\n" + "\n".join(train) + "\n")
    (root / "test.csv").write_text("id\n" + "\n".join(TEST_IDS) + "\n")
    return root


def _only_run(experiment: str = "generated-or-not"):
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run


def _predict_and_check(root: Path, out: Path, argv: list[str], capsys) -> pd.DataFrame:
    """Run the command on the Kaggle folder and check the submission against the model itself."""
    from fid_bench.tracking.pyfunc import load_predictor

    assert main([*argv, "--data", "kaggle", "--root", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    sub = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
    assert list(sub.columns) == ["id", "target"]
    assert sub["id"].tolist() == TEST_IDS  # every id, test.csv order, verbatim

    run = _only_run()
    predictor = load_predictor(run.info.run_id)
    by_id = dict(zip(sub["id"], sub["target"], strict=True))
    # unreadable images: the training prior, and named on the terminal
    train_prior = 0.5  # labels alternate 0/1 in train.csv
    assert predictor.prior == pytest.approx(train_prior, abs=0.1)
    for id_ in UNREADABLE_IDS:
        assert by_id[id_] == pytest.approx(predictor.prior)
        assert f"  {id_}:" in printed
    assert "3 image(s) could not be read" in printed
    listing = pd.read_csv(out.with_name(f"{out.stem}.unreadable.csv"), dtype={"id": str})
    assert sorted(listing["id"]) == sorted(UNREADABLE_IDS)
    # readable images: exactly what the logged model gives for that file (same preprocessing)
    readable = [i for i in TEST_IDS if i not in UNREADABLE_IDS]
    direct = predictor.predict_paths([str(root / "images" / f"{i}.png") for i in readable])
    assert [by_id[i] for i in readable] == pytest.approx(direct.tolist(), abs=1e-6)
    assert ((sub["target"] >= 0) & (sub["target"] <= 1)).all()

    # --labels: 0/1 at the run's stored threshold
    labels_out = out.with_name("labels.csv")
    assert main([*argv, "--data", "kaggle", "--root", str(root), "--out", str(labels_out), "--labels"]) == 0
    labels = pd.read_csv(labels_out, dtype={"id": str}, keep_default_na=False)
    assert labels["id"].tolist() == TEST_IDS
    expected = (sub["target"].to_numpy() >= predictor.threshold).astype(int)
    assert labels["target"].tolist() == expected.tolist()
    return sub


@pytest.mark.slow
def test_finetuned_run_predicts_a_kaggle_submission(compose_cfg, isolated: Path, capsys) -> None:
    from fid_bench.jobs.experiment import run_job

    root = kaggle_folder(isolated / "gon")
    run_job(compose_cfg("data=kaggle", f"data.root={root}", *FINETUNE_TINY, tiny=False))
    run = _only_run()
    assert run.data.tags["classifier"] == "finetune"
    capsys.readouterr()
    _predict_and_check(root, isolated / "sub.csv", ["--run", run.info.run_id], capsys)


def test_embedding_run_predicts_a_kaggle_submission(compose_cfg, isolated: Path, capsys) -> None:
    from fid_bench.jobs.experiment import run_job

    root = kaggle_folder(isolated / "gon")
    run_job(
        compose_cfg(
            "data=kaggle",
            f"data.root={root}",
            "model=spectrum",
            "classifier=logreg",
            "features.num_workers=0",
            tiny=False,
        )
    )
    run = _only_run()
    assert run.data.tags["classifier"] == "logreg"

    # new images are extracted through the training run's content-addressed feature cache
    import hashlib

    from hydra.utils import instantiate

    from fid_bench.features.extract import feature_cache
    from fid_bench.tracking.pyfunc import load_predictor

    predictor = load_predictor(run.info.run_id)
    assert Path(predictor.cache_dir) == isolated / "cache"
    cache = feature_cache(instantiate(predictor.encoder_cfg), Path(predictor.cache_dir))
    readable = [i for i in TEST_IDS if i not in UNREADABLE_IDS]
    sha1s = [hashlib.sha1((root / "images" / f"{i}.png").read_bytes()).hexdigest() for i in readable]
    assert sorted(cache.missing(sha1s)) == sorted(sha1s)  # training never saw them

    capsys.readouterr()
    _predict_and_check(root, isolated / "sub.csv", ["--run", "best"], capsys)
    assert cache.missing(sha1s) == []


# --------------------------------------------------------------------------- runs logged directly (fast)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated tracking database, made once: creating one costs ~10 s of migrations."""
    import mlflow

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(isolated: Path, store_template: Path) -> Path:
    """The test's own store (the path MLFLOW_TRACKING_URI names), copied from the template."""
    import shutil

    shutil.copy(store_template, isolated / "mlruns" / "mlflow.db")
    return isolated


def _log_model_run(experiment: str, artifact_location: Path, metrics: dict[str, float]) -> str:
    """A finished run holding a BrightnessPredictor, logged the way jobs log their models."""
    import mlflow

    from fid_bench.tracking.pyfunc import log_predictor_model

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location.as_uri())
    with mlflow.start_run(experiment_id=exp_id, tags={"fid_bench.kind": "job"}) as run:
        log_predictor_model(BrightnessPredictor(), run.info.run_id)
        mlflow.log_metrics(metrics)
    return run.info.run_id


def _image_dir(root: Path) -> Path:
    _png(root / "dark.png", value=0)
    _png(root / "sub" / "light.png", value=255)
    _png(root / "sub" / "mid.png", value=102)
    _truncated_jpeg(root / "sub" / "zbroken.jpg")
    return root


def test_images_from_a_run_in_the_store(store: Path, capsys) -> None:
    run_id = _log_model_run("exp", store / "mlruns" / "artifacts" / "exp", {"roc_auc": 0.8})
    images = _image_dir(store / "imgs")
    out = store / "preds" / "p.csv"
    assert main(["--run", run_id, "--images", str(images), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", "path", "score", "label"]
    assert df["id"].tolist() == ["dark.png", "sub/light.png", "sub/mid.png", "sub/zbroken.jpg"]
    assert df["score"].tolist() == pytest.approx(
        [0.0, 1.0, 0.4, 0.25]
    )  # brightness; prior for the broken one
    assert df["label"].tolist() == [0, 1, 0, 0]
    assert Path(df["path"][1]) == images / "sub" / "light.png"
    assert "1 image(s) could not be read" in capsys.readouterr().out

    # the same model through an explicit model URI
    out2 = store / "preds" / "p2.csv"
    uri = f"runs:/{run_id}/model"
    assert main(["--model-uri", uri, "--images", str(images), "--out", str(out2), "--no-progress"]) == 0
    assert pd.read_csv(out2)["score"].tolist() == df["score"].tolist()


def test_run_selection_errors_are_one_line(store: Path, capsys, tmp_path: Path) -> None:
    images = _image_dir(store / "imgs")
    base = ["--images", str(images), "--out", str(store / "p.csv")]

    def error(argv: list[str], code: int = 1) -> str:
        assert main(argv) == code
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0], lines
        return lines[0]

    assert "no runs" in error(["--run", "best", *base])
    _log_model_run("a", store / "mlruns" / "artifacts" / "a", {"roc_auc": 0.6, "log_loss": 0.3})
    best_a = _log_model_run("a", store / "mlruns" / "artifacts" / "a", {"roc_auc": 0.9, "log_loss": 0.5})
    assert "unknown run 'deadbeef'" in error(["--run", "deadbeef", *base])
    assert "never logged" in error(["--run", "best", "--metric", "eer", *base])
    assert "no experiment named 'zzz'" in error(["--run", "best", "--experiment", "zzz", *base])
    _log_model_run("b", store / "mlruns" / "artifacts" / "b", {"roc_auc": 0.7})
    msg = error(["--run", "best", *base])
    assert "--experiment" in msg and "'a'" in msg and "'b'" in msg
    client = __import__("mlflow").MlflowClient()
    parent = client.create_run(
        client.get_experiment_by_name("a").experiment_id, tags={"fid_bench.kind": "parent"}
    )
    assert "holds no model" in error(["--run", parent.info.run_id, *base])
    empty = client.create_experiment("empty")
    assert empty and "no finished runs" in error(["--run", "best", "--experiment", "empty", *base])
    assert "no tracking store" in error(
        ["--run", "best", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", *base], code=2
    )

    # best by roc_auc (higher) and by log_loss (lower) pick different runs
    from fid_bench.tracking.run_queries import make_client, rank_runs, resolve_run, tracking_uri

    client = make_client(tracking_uri())
    assert rank_runs(client, "a", "roc_auc")[1][0].info.run_id == best_a
    assert rank_runs(client, "a", "log_loss")[1][0].info.run_id != best_a

    # a better run that logged no model (tracking.log_model=false) is passed over for one that did
    no_model = client.create_run(
        client.get_experiment_by_name("a").experiment_id, tags={"fid_bench.kind": "job"}
    )
    client.log_metric(no_model.info.run_id, "roc_auc", 0.99)
    client.set_terminated(no_model.info.run_id, "FINISHED")
    assert rank_runs(client, "a", "roc_auc")[1][0].info.run_id == no_model.info.run_id
    assert resolve_run(client, "best", experiment="a", metric="roc_auc").info.run_id == best_a


def test_best_is_the_leaderboards_first_row_even_on_ties(store: Path) -> None:
    from fid_bench.tracking.leaderboard import Query, leaderboard
    from fid_bench.tracking.run_queries import make_client, resolve_run, tracking_uri

    ids = [_log_model_run("tie", store / "mlruns" / "artifacts" / "tie", {"roc_auc": 1.0}) for _ in range(3)]
    client = make_client(tracking_uri())
    (board,) = leaderboard(client, Query(experiment="tie", metric="roc_auc"))
    best = resolve_run(client, "best", experiment="tie", metric="roc_auc")
    assert best.info.run_id == board.runs["run_id"][0] == min(ids)


def test_kaggle_test_csv_problems_are_reported_before_any_model_is_loaded(isolated: Path, capsys) -> None:
    root = kaggle_folder(isolated / "gon", n_train=4)
    (root / "test.csv").write_text("id\nt1\nt2\nt1\n")
    argv = [
        "--run",
        "never-looked-up",
        "--data",
        "kaggle",
        "--root",
        str(root),
        "--out",
        str(isolated / "s.csv"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "listed twice" in err[0] and "'t1'" in err[0]
    (root / "test.csv").unlink()
    assert main(argv) == 1
    assert "no test.csv" in capsys.readouterr().err


def test_module_entry_points(isolated: Path) -> None:
    """``python -m fid_bench.commands.predict_command`` / ``.compare``: help, and one-line errors without a traceback."""
    import subprocess
    import sys

    from tests.conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=isolated, env=env, capture_output=True, text=True, timeout=300
        )

    for module in ("fid_bench.commands.predict_command", "fid_bench.commands.compare_command"):
        done = run(module, "--help")
        assert done.returncode == 0 and "--tracking-uri" in done.stdout
    done = run(
        "fid_bench.commands.predict_command", "--run", "best", "--images", str(isolated), "--out", "o.csv"
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert [ln for ln in done.stderr.splitlines() if "error:" in ln] == done.stderr.strip().splitlines()[-1:]


def test_folder_inputs_keep_skipped_files_as_unreadable_in_id_order(tmp_path: Path) -> None:
    from fid_bench.config import compose
    from fid_bench.data.inputs import configured_inputs

    root = tmp_path / "set"
    _png(root / "real" / "a.png")
    _png(root / "fake" / "b.png", value=30)
    (root / "fake" / "a_broken.png").write_bytes(b"not an image")
    inputs = configured_inputs(compose(["data=folder", f"data.root={root}"]))
    assert inputs.kind == "images"
    assert inputs.ids == ["fake/a_broken.png", "fake/b.png", "real/a.png"] == inputs.expected_ids
    assert inputs.paths == [str(root / i) for i in inputs.ids]
    # only the broken file, with the reader's reason; readable files carry none
    assert list(inputs.unreadable) == [0] and inputs.unreadable[0].startswith("undecodable")


def test_kaggle_row_without_a_hash_or_a_reason_is_still_unreadable() -> None:
    """A predict row the reader left without a content hash but gave no reason for is listed as such."""
    from fid_bench.data.inputs import scored_inputs
    from fid_bench.data.samples import SAMPLE_COLUMNS, Samples

    table = pd.DataFrame(
        [("x", "/d/x.png", -1, "predict", "", "ab" * 20), ("y", "/d/y.png", -1, "predict", "", "")],
        columns=SAMPLE_COLUMNS,
    )
    inputs = scored_inputs(Samples(table))
    assert (inputs.kind, inputs.ids, inputs.unreadable) == ("kaggle", ["x", "y"], {1: "unreadable"})


def test_a_data_set_named_by_overrides_is_scored_as_audit_reads_it(store: Path, capsys) -> None:
    """``predict ... data=folder data.root=DIR``: the reader its config builds; ``--data`` is the same."""
    run_id = _log_model_run("exp", store / "mlruns" / "artifacts" / "exp", {"roc_auc": 0.8})
    root = store / "set"
    _png(root / "real" / "dark.png", value=0)
    _png(root / "fake" / "light.png", value=255)
    (root / "fake" / "a_broken.png").write_bytes(b"not an image")
    out, alias = store / "p.csv", store / "alias.csv"
    argv = ["--run", run_id, "--no-progress"]
    assert main([*argv, "--out", str(out), "data=folder", f"data.root={root}"]) == 0
    df = pd.read_csv(out)
    assert df["id"].tolist() == ["fake/a_broken.png", "fake/light.png", "real/dark.png"]
    assert df["score"].tolist() == pytest.approx([0.25, 1.0, 0.0])  # the prior for the broken file
    assert "1 image(s) could not be read" in capsys.readouterr().out
    assert main([*argv, "--out", str(alias), "--data", "folder", "--root", str(root)]) == 0
    assert alias.read_text() == out.read_text()
    # the reader's own settings come through the same overrides (a strict reader refuses the broken file)
    assert main([*argv, "--out", str(alias), "data=folder", f"data.root={root}", "data.strict=true"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_broken.png" in err[0] and "strict" in err[0]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data=nope"], "nope"),
        (["data=folder"], "data.root is required"),
        (["data=folder", "data.no_such_key=1"], "no_such_key"),
    ],
)
def test_a_bad_data_override_is_one_line_before_any_model(
    overrides: list[str], needle: str, isolated: Path, capsys
) -> None:
    assert main(["--run", "never-looked-up", "--out", str(isolated / "o.csv"), *overrides]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fid-bench predict: error:") and needle in err[0], err


def test_nan_score_gets_the_default_prior_and_the_reason_no_score() -> None:
    """A duck-typed predictor without ``prior``: images it gives NaN (or cannot read) get 0.5."""

    class Plain:
        def predict_paths(self, paths: list[str]) -> np.ndarray:
            return np.array([0.9, np.nan, 0.2][: len(paths)])

    inputs = Inputs(ids=["a", "b", "c", "d"], paths=["/a", "/b", "/c", "/d"], kind="images")
    inputs.unreadable[3] = "missing_file"
    scores = predict_all(Plain(), inputs, progress=False)
    assert scores.tolist() == [0.9, 0.5, 0.2, 0.5]
    assert inputs.unreadable == {3: "missing_file", 1: "no score"}


def test_model_without_files_names_every_location_checked(monkeypatch) -> None:
    import fid_bench.predict as predict_module

    monkeypatch.setattr(predict_module, "store_roots", lambda uri, client: [])
    monkeypatch.setattr(predict_module, "check_model_location", lambda *a, **k: None)
    monkeypatch.setattr(predict_module, "fetch_checked_model", lambda *a, **k: False)
    with pytest.raises(FidBenchError) as err:
        predict_module.load_checked_predictor(
            "runs:/r/model", ["/s/a", "/s/b"], None, "x", allow_external=False
        )
    assert str(err.value) == "cannot load the model runs:/r/model: no files at /s/a, /s/b"


def test_output_labels_use_threshold_0_5_when_the_predictor_has_none() -> None:
    from fid_bench.submission import build_output

    class Plain:  # duck-typed: no stored threshold
        pass

    inputs = Inputs(ids=["a", "b", "c"], paths=["/a", "/b", "/c"], kind="images")
    out = build_output(inputs, np.array([0.49, 0.5, 0.8]), Plain(), labels=True)
    assert out["label"].tolist() == [0, 1, 1]


def test_output_refuses_a_nan_threshold_naming_it() -> None:
    from fid_bench.submission import build_output

    class NoThreshold:
        threshold = float("nan")

    inputs = Inputs(ids=["a"], paths=["/a"], kind="kaggle")
    with pytest.raises(FidBenchError) as err:
        build_output(inputs, np.array([0.3]), NoThreshold(), labels=True)
    assert str(err.value) == "the run's stored threshold is nan; cannot write 0/1 labels"


@pytest.mark.parametrize(("n", "last"), [(20, "  i19: bad"), (23, "  ... and 3 more")])
def test_unreadable_listing_shows_twenty_then_counts_the_rest(
    tmp_path: Path, capsys, n: int, last: str
) -> None:
    from fid_bench.submission import SHOW_UNREADABLE, report_unreadable

    assert SHOW_UNREADABLE == 20
    ids = [f"i{k}" for k in range(n)]
    inputs = Inputs(
        ids=ids, paths=[f"/{i}" for i in ids], kind="images", unreadable=dict.fromkeys(range(n), "bad")
    )
    listing = report_unreadable(inputs, tmp_path / "out.csv", 0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == last and len(lines) == 1 + 20 + (n > 20)
    assert len(pd.read_csv(listing)) == n  # the file lists every one
