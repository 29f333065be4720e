"""Pairing on the same images, and runs scored on fewer rows (issue 20, holes 2 and 3).

Hole 2: ``compare`` and ``ensemble`` matched rows on id and label only, so two runs of a data set
whose test images were re-encoded under the same names were paired as if they had seen the same
images. Every scores frame now carries each row's content hash (``sha1``), and pairing refuses rows
whose hashes differ, in one line saying how many. Hole 3: an import of only the rows a detector got
right led the leaderboard with ROC-AUC 1.0; the board now shows each run's test-row count and ranks
a run on fewer rows than the most complete run on the same data after the complete ones, marked.
The runs are real jobs (spectrum features, logistic regression / kNN) on a tiny folder data set.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.commands.compare_command import main as compare_main
from fid_bench.commands.ensemble_command import main as ensemble_main
from fid_bench.commands.import_predictions_command import main as import_main
from fid_bench.commands.leaderboard_command import main as leaderboard_main


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri():
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


def _data(root: Path, n: int = 24) -> Path:
    """``real/``: smooth random images; ``fake/``: up-sampled noise (what spectrum features see)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "real").mkdir(parents=True, exist_ok=True)
        (root / "fake").mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(root / "real" / f"r{i:02d}.png")
        noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((32, 32), Image.NEAREST).save(root / "fake" / f"f{i:02d}.png")
    return root


def _job(compose_cfg, root: Path, classifier: str) -> str:
    import mlflow

    from fid_bench.jobs.experiment import run_job

    before = {r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    cfg = compose_cfg(
        "data=folder", f"data.root={root}", "data.name=tiny", "model=spectrum", f"classifier={classifier}",
        "features.num_workers=0", "eval.bootstrap=0", "audit.enabled=false", tiny=False,
    )  # fmt: skip
    run_job(cfg)
    (new,) = [
        r.info.run_id
        for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
        if r.info.run_id not in before
    ]
    return new


def _predictions(run_id: str) -> pd.DataFrame:
    import mlflow

    path = mlflow.MlflowClient().download_artifacts(run_id, "predictions.csv")
    return pd.read_csv(path, dtype={"id": str, "sha1": str}, keep_default_na=False)


def _err(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def _n_runs() -> int:
    import mlflow

    return len(mlflow.search_runs(search_all_experiments=True, output_format="list"))


def test_runs_on_re_encoded_images_under_the_same_names_are_not_paired(
    compose_cfg, tmp_path: Path, capsys
) -> None:
    root = _data(tmp_path / "data")
    a = _job(compose_cfg, root, "logreg")
    scores = _predictions(a)
    test_ids = scores.loc[scores["split"] == "test", "id"].tolist()

    # three test images re-encoded under the same names (ids and labels unchanged)
    for image_id in test_ids[:3]:
        path = root / image_id
        img = Image.open(path).convert("RGB")
        img.putpixel((0, 0), tuple(255 - v for v in img.getpixel((0, 0))))
        img.save(path)
    b = _job(compose_cfg, root, "knn")
    b_scores = _predictions(b)
    assert b_scores.loc[b_scores["split"] == "test", "id"].tolist() == test_ids  # same ids, same split

    capsys.readouterr()
    assert compare_main([a, b, "--out", str(tmp_path / "ab.png"), "--no-log"]) == 1
    err = _err(capsys)
    assert len(err) == 1 and "different images under the same ids" in err[0], err
    assert f"3 of {len(test_ids)} test row(s)" in err[0] and repr(test_ids[0]) in err[0], err

    n = _n_runs()
    assert ensemble_main([a, b, "--method", "mean"]) == 1
    err = _err(capsys)
    assert len(err) == 1 and "different images under the same ids" in err[0] and "3 test row(s)" in err[0], (
        err
    )
    assert _n_runs() == n  # refused before any run was created

    # the same images again: the pairing is allowed
    c = _job(compose_cfg, root, "logreg")
    assert compare_main([b, c, "--out", str(tmp_path / "bc.png"), "--no-log"]) == 0
    # an ensemble's predictions carry its members' hashes: it pairs with them, and refuses A like they do
    assert ensemble_main([b, c, "--method", "mean"]) == 0
    import mlflow

    (ens,) = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`fid_bench.kind` = 'ensemble'", output_format="list"
    )
    assert _predictions(ens.info.run_id)["sha1"].tolist() == _predictions(b)["sha1"].tolist()
    assert compare_main([ens.info.run_id, c, "--out", str(tmp_path / "ec.png"), "--no-log"]) == 0
    assert compare_main([ens.info.run_id, a, "--out", str(tmp_path / "ea.png"), "--no-log"]) == 1
    assert (scores["sha1"].str.len() == 40).all()  # every row carries its image's content hash


def test_a_run_without_content_hashes_is_said_to_be_older(tmp_path: Path, capsys) -> None:
    """A run logged before predictions.csv carried hashes: one line saying so, for compare and ensemble."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())
    ids = []
    for with_hashes in (False, True):
        run = client.create_run(exp, tags={"fid_bench.kind": "job"})
        rows = pd.DataFrame(
            {"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1], "score": [0.1, 0.8, 0.3, 0.6],
             "split": "test", "group": "", "fold": 0}
        )  # fmt: skip
        if with_hashes:
            rows["sha1"] = ["1" * 40, "2" * 40, "3" * 40, "4" * 40]
        folder = tmp_path / run.info.run_id
        folder.mkdir()
        rows.to_csv(folder / "predictions.csv", index=False)
        client.log_artifact(run.info.run_id, str(folder / "predictions.csv"))
        client.log_metric(run.info.run_id, "roc_auc", 1.0)
        client.set_terminated(run.info.run_id, "FINISHED")
        ids.append(run.info.run_id)
    capsys.readouterr()
    assert compare_main([*ids, "--out", str(tmp_path / "x.png"), "--no-log", "--bootstrap", "0"]) == 1
    err = _err(capsys)
    assert len(err) == 1 and f"run {ids[0][:8]} logged no per-row content hashes" in err[0], err


# --------------------------------------------------------------------------- hole 3: partial runs


def _board(capsys, *args: str) -> list[dict[str, str]]:
    capsys.readouterr()
    assert leaderboard_main(["--experiment", "tiny", "--format", "csv", *args]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_a_cherry_picked_import_is_marked_and_never_top(compose_cfg, tmp_path: Path, capsys) -> None:
    root = _data(tmp_path / "data")
    a = _job(compose_cfg, root, "logreg")
    _job(compose_cfg, root, "knn")
    test = _predictions(a)
    test = test[test["split"] == "test"]
    # only the rows a detector got right, scored perfectly
    right = test[(test["score"] >= 0.5) == (test["label"] == 1)]
    picked = right.iloc[: len(test) - 4]
    assert 0 < len(picked) < len(test)
    file = tmp_path / "picked.csv"
    pd.DataFrame({"id": picked["id"], "score": picked["label"].astype(float)}).to_csv(file, index=False)
    assert import_main(["--name", "picked", str(file), "--like", a]) == 0

    rows = _board(capsys)
    by_name = {r["model"]: r for r in rows}
    assert float(by_name["picked"]["roc_auc"]) == 1.0  # the best number on the board ...
    assert rows[-1]["model"] == "picked"  # ... ranked after every complete run
    assert by_name["picked"]["partial"] == "True"
    assert by_name["picked"]["n_test"] == str(len(picked))
    assert by_name["picked"]["n_test_reference"] == str(len(test))
    assert by_name["picked"]["tied_with_top"] != "True"
    complete = [r for r in rows if r["model"] != "picked"]
    assert all(r["partial"] == "False" and r["n_test"] == str(len(test)) for r in complete)
    assert "True" in {r["tied_with_top"] for r in complete}  # the top is a complete run

    # the table shows the count and the mark, and says what the mark means
    capsys.readouterr()
    assert leaderboard_main(["--experiment", "tiny"]) == 0
    out = capsys.readouterr().out
    picked_line = next(line for line in out.splitlines() if " picked " in line)
    assert f"{len(picked)} < {len(test)}" in picked_line and " top " not in picked_line
    assert "fewer test rows than the most complete run" in out
    # even shown alone (--top 1), the import is not the one shown
    assert [r["model"] for r in _board(capsys, "--top", "1")] != ["picked"]


def test_completeness_compares_runs_on_the_same_data_only() -> None:
    """The reference count is per data fingerprint, hold-out and cross-validated runs apart; an import
    that says it missed rows is partial even without a complete run beside it."""
    from fid_bench.tracking.leaderboard import completeness

    def run(fingerprint: str, n_test: float, **extra: float) -> dict:
        return {"tags": {"data_fingerprint": fingerprint}, "metrics": {"n_test": n_test, **extra}}

    frame = pd.DataFrame(
        [
            run("d1", 40),
            run("d1", 33),  # fewer rows on the same data: partial
            run("d2", 20),  # other data: its own reference
            run("d1", 8, n_folds=5),  # cross-validated: compared with cross-validated runs only
            run("d3", 30, **{"import/n_missing_test": 10}),  # an import alone that missed 10 rows
        ]
    )
    out = completeness(frame)
    assert out["partial"].tolist() == [False, True, False, False, True]
    assert out["n_test_reference"].tolist() == [40, 40, 20, 8, 40]
