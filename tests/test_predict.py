"""``fid-bench predict``: model location checks, image discovery, scoring with broken files, output checks,
and whole runs of both tracks predicted through the same command."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.detector import Predictor
from fid_bench.errors import FidBenchError
from fid_bench.predict import (
    Inputs,
    StoreRoots,
    check_model_location,
    images_under,
    location_problem,
    main,
    predict_all,
    store_roots,
    write_output,
)


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


# --------------------------------------------------------------------------- where a model may come from


def test_sqlite_store_accepts_only_paths_inside_its_folder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "artifacts" / "exp").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    roots = store_roots(f"sqlite:///{store / 'mlflow.db'}")
    assert store.resolve() in roots.local

    assert location_problem((store / "artifacts" / "exp" / "model").as_uri(), roots) is None
    assert location_problem(str(store / "artifacts" / "x"), roots) is None
    # '..' cannot climb out of the root
    problem = location_problem(str(store / "artifacts" / ".." / ".." / "elsewhere" / "model"), roots)
    assert problem is not None and "outside the tracking store" in problem
    # nor can a symlink inside the store that points out of it
    os.symlink(outside, store / "artifacts" / "link")
    assert location_problem(str(store / "artifacts" / "link" / "model"), roots) is not None
    # a remote bucket or another server is never "inside" a local store
    assert location_problem("s3://bucket/model", roots) is not None
    assert location_problem("mlflow-artifacts:/0/abc/artifacts/model", roots) is not None


def test_server_store_accepts_only_what_it_serves() -> None:
    roots = store_roots("http://127.0.0.1:5005")
    assert roots.server == "http://127.0.0.1:5005"
    assert location_problem("mlflow-artifacts:/1/abc/artifacts/model", roots) is None
    assert location_problem("mlflow-artifacts://127.0.0.1:5005/1/abc/artifacts/model", roots) is None
    assert location_problem("mlflow-artifacts://10.0.0.1:80/1/x", roots) is not None
    assert location_problem("/tmp/model", roots) is not None
    assert location_problem("file:///tmp/model", roots) is not None


def test_refusal_names_the_reason_and_the_escape_hatch(tmp_path: Path) -> None:
    roots = StoreRoots(local=(tmp_path.resolve() / "store",))
    with pytest.raises(FidBenchError) as err:
        check_model_location([str(tmp_path / "evil" / "model")], roots, allow_external=False)
    msg = str(err.value)
    assert "\n" not in msg and "--allow-external" in msg and "code" in msg
    # explicitly allowed: only a warning
    check_model_location([str(tmp_path / "evil" / "model")], roots, allow_external=True)


# --------------------------------------------------------------------------- inputs and scoring


def test_images_under_takes_every_image_with_relative_ids(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "b.png")
    _png(tmp_path / "imgs" / "sub" / "a.PNG")
    _truncated_jpeg(tmp_path / "imgs" / "sub" / "c.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    inputs = images_under(tmp_path / "imgs")
    assert inputs.ids == ["b.png", "sub/a.PNG", "sub/c.jpg"]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in inputs.paths)
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
