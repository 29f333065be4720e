"""``fid-bench compare``: overlaid curves from the runs' predictions, the metric table, where it is logged,
and the one-line errors. Runs are made directly in the test's own store: compare only reads each run's
``predictions.csv`` and metrics, whatever produced them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fid_bench.commands.compare_command import main
from fid_bench.errors import FidBenchError
from fid_bench.tracking.compare import compare_runs


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


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _predictions(rng: np.random.Generator, separation: float, n: int = 60) -> pd.DataFrame:
    """Scores whose test rows separate the classes by ``separation``; val rows are deliberately inverted
    so that a comparison that forgot to keep only test rows would draw other curves."""
    rows = []
    for split, sign in (("val", -1.0), ("test", 1.0)):
        label = np.arange(n) % 2
        score = 1 / (1 + np.exp(-(sign * separation * (label - 0.5) * 4 + rng.normal(0, 1, n))))
        rows.append(
            pd.DataFrame(
                {"id": [f"{split}{i}" for i in range(n)], "label": label, "score": score, "split": split}
            )
        )
    df = pd.concat(rows, ignore_index=True)
    df["group"] = ""
    df["fold"] = 0
    df["sha1"] = "h-" + df["id"]  # each image's content hash (the same images in every run)
    return df


def _make_run(
    exp_id: str, tmp: Path, name: str, scores: pd.DataFrame | None, metrics: dict, parent: str | None = None
) -> str:
    client = _client()
    tags = {"fid_bench.kind": "job", "model": "spectrum", "classifier": name, "balance": "none"}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, run_name=f"spectrum-{name}-none", tags=tags)
    run_id = run.info.run_id
    for k, v in metrics.items():
        client.log_metric(run_id, k, v)
    if scores is not None:
        path = tmp / run_id / "predictions.csv"
        path.parent.mkdir(parents=True)
        scores.to_csv(path, index=False)
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def sweep(store: Path) -> dict:
    """A parent run with three finished children of different quality."""
    from sklearn.metrics import roc_auc_score

    client = _client()
    exp_id = client.create_experiment("demo", artifact_location=(store / "mlruns" / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name="sweep", tags={"fid_bench.kind": "parent"}).info.run_id
    rng = np.random.default_rng(0)
    out = {"exp_id": exp_id, "parent": parent, "runs": {}, "auc": {}}
    for name, sep in (("logreg", 2.0), ("knn", 0.5), ("rf", 1.0)):
        scores = _predictions(rng, sep)
        test = scores[scores["split"] == "test"]
        auc = float(roc_auc_score(test["label"], test["score"]))
        run_id = _make_run(exp_id, store, name, scores, {"roc_auc": auc, "f1": 0.5, "log_loss": 0.7}, parent)
        out["runs"][name] = run_id
        out["auc"][name] = auc
    client.set_terminated(parent, "FINISHED")
    return out


def test_curves_come_from_test_rows_and_go_to_the_shared_parent(sweep, isolated: Path) -> None:
    ids = [sweep["runs"][n] for n in ("logreg", "knn", "rf")]
    result = compare_runs(ids, isolated / "out" / "cmp.png")

    # one curve pair per run, areas equal to the AUC of that run's test rows alone
    assert len(result.curves) == 3
    for name, (roc, pr) in zip(("logreg", "knn", "rf"), result.curves.values(), strict=True):
        assert roc.area == pytest.approx(sweep["auc"][name])
        assert roc.n == 60 and 0.0 <= pr.area <= 1.0
    assert sweep["auc"]["logreg"] > sweep["auc"]["rf"] > sweep["auc"]["knn"]
    with Image.open(result.figure) as img:
        assert img.format == "PNG" and img.width > img.height  # two panels side by side

    table = pd.read_csv(result.table_csv)
    assert table["run_id"].tolist() == ids
    assert table["roc_auc"].tolist() == pytest.approx([sweep["auc"][n] for n in ("logreg", "knn", "rf")])
    assert table["classifier"].tolist() == ["logreg", "knn", "rf"]
    assert table["n_test"].tolist() == [60, 60, 60]
    assert "accuracy" not in table.columns  # never logged by any of these runs
    md = result.table_md.read_text().splitlines()
    assert md[0].startswith("| run_id | name") and len(md) == 2 + 3

    assert result.logged_to == sweep["parent"]
    logged = {a.path for a in _client().list_artifacts(sweep["parent"], "comparison")}
    assert logged == {"comparison/cmp.png", "comparison/cmp.csv", "comparison/cmp.md"}


def test_runs_without_a_common_parent_get_a_comparison_run(sweep, isolated: Path) -> None:
    lone = _make_run(
        sweep["exp_id"], isolated, "lone", _predictions(np.random.default_rng(1), 1.5), {"roc_auc": 0.9}
    )
    ids = [sweep["runs"]["logreg"], lone]
    result = compare_runs(ids, isolated / "cmp.png")
    target = _client().get_run(result.logged_to)
    assert target.info.run_id not in (sweep["parent"], *ids)
    assert target.data.tags["fid_bench.kind"] == "comparison"
    assert target.data.tags["fid_bench.compared_runs"] == ",".join(ids)
    assert target.info.status == "FINISHED" and target.info.experiment_id == sweep["exp_id"]
    assert {a.path for a in _client().list_artifacts(target.info.run_id, "comparison")} == {
        "comparison/cmp.png",
        "comparison/cmp.csv",
        "comparison/cmp.md",
    }

    # the comparison run never competes with real runs for "best"
    from fid_bench.tracking.run_queries import rank_runs

    _, ranked = rank_runs(_client(), "demo", "roc_auc")
    assert target.info.run_id not in {r.info.run_id for r in ranked}
    assert sweep["parent"] not in {r.info.run_id for r in ranked}


def test_explicit_target_run_and_no_logging(sweep, isolated: Path) -> None:
    ids = [sweep["runs"]["knn"], sweep["runs"]["rf"]]
    result = compare_runs(ids, isolated / "top.png", log_to_run_id=sweep["runs"]["logreg"])
    assert result.logged_to == sweep["runs"]["logreg"]
    assert {a.path for a in _client().list_artifacts(sweep["runs"]["logreg"], "comparison")} == {
        "comparison/top.png",
        "comparison/top.csv",
        "comparison/top.md",
    }
    n_runs = len(_client().search_runs([sweep["exp_id"]]))
    result = compare_runs(ids, isolated / "quiet.png", log_artifacts=False)
    assert result.logged_to is None and result.figure.exists()
    assert len(_client().search_runs([sweep["exp_id"]])) == n_runs
    assert _client().list_artifacts(sweep["parent"], "comparison") == []


def test_bad_runs_are_one_line_errors(sweep, isolated: Path) -> None:
    with pytest.raises(FidBenchError, match="unknown run 'nope'"):
        compare_runs([sweep["runs"]["knn"], "nope"], isolated / "x.png")
    empty = _make_run(sweep["exp_id"], isolated, "empty", None, {"roc_auc": 0.5})
    with pytest.raises(FidBenchError, match="no predictions.csv"):
        compare_runs([empty], isolated / "x.png")
    with pytest.raises(FidBenchError, match="PNG"):
        compare_runs([sweep["runs"]["knn"]], isolated / "x.jpg")
    with pytest.raises(FidBenchError, match="given twice"):
        compare_runs([sweep["runs"]["knn"]] * 2, isolated / "x.png")
    assert not (isolated / "x.png").exists()


def test_command_line(sweep, isolated: Path, capsys) -> None:
    # --top 2 by roc_auc: the two best runs, best first
    assert main(["--top", "2", "--out", str(isolated / "best.png"), "--no-log"]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(isolated / "best.csv")
    assert table["run_id"].tolist() == [sweep["runs"]["logreg"], sweep["runs"]["rf"]]
    assert "| run_id |" in out and "best.png" in out

    # lower-is-better metrics rank the other way
    assert main(["--top", "1", "--metric", "log_loss", "--out", str(isolated / "ll.png"), "--no-log"]) == 0
    capsys.readouterr()

    for argv, code, needle in (
        (["nope", "--out", str(isolated / "e.png")], 1, "unknown run"),
        (["--top", "2", "--metric", "nope"], 1, "never logged"),
        (["--top", "2", "--experiment", "other"], 1, "no experiment named 'other'"),
        ([], 2, "at least one RUN_ID"),
        (["a", "--top", "2"], 2, "not both"),
        (["a", "--no-log", "--log-to", "b"], 2, "contradict"),
    ):
        assert main(argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0] and needle in err[0], (argv, err)

    assert main(["--help"]) == 0
    assert "--top" in capsys.readouterr().out


def test_empty_or_missing_store_is_a_one_line_error(store: Path, capsys) -> None:
    assert main(["--top", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs" in err[0]
    # a store that does not exist is reported, not created
    missing = store / "nowhere" / "m.db"
    assert main(["--top", "3", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tracking store" in err[0] and not missing.exists()


def test_parent_gets_the_comparison_of_its_best_children(sweep, isolated: Path) -> None:
    from fid_bench.tracking.compare import compare_children

    result = compare_children(sweep["parent"], isolated / "sweep" / "top.png", top=2)
    assert result is not None and result.logged_to == sweep["parent"]
    assert pd.read_csv(result.table_csv)["run_id"].tolist() == [sweep["runs"]["logreg"], sweep["runs"]["rf"]]
    assert "comparison/top.png" in {a.path for a in _client().list_artifacts(sweep["parent"], "comparison")}
    # losses rank lowest first; every child logged the same log_loss, so ties go by run id
    result = compare_children(sweep["parent"], isolated / "sweep" / "ll.png", metric="log_loss", top=5)
    assert pd.read_csv(result.table_csv)["run_id"].tolist() == sorted(sweep["runs"].values())
    # nothing to compare: no exception (a sweep end must not fail), nothing logged
    assert compare_children(sweep["parent"], isolated / "sweep" / "x.png", metric="never") is None
    assert compare_children(sweep["runs"]["knn"], isolated / "sweep" / "y.png") is None
    assert not (isolated / "sweep" / "x.png").exists() and not (isolated / "sweep" / "y.png").exists()
    # a child without predictions.csv spoils the figure, not the sweep
    _make_run(sweep["exp_id"], isolated, "nopred", None, {"roc_auc": 0.999}, sweep["parent"])
    assert compare_children(sweep["parent"], isolated / "sweep" / "z.png") is None


def test_files_go_to_the_out_folder_or_beside_the_store_never_the_working_folder(
    sweep, isolated: Path, capsys
) -> None:
    short = [sweep["runs"]["logreg"][:8], sweep["runs"]["rf"][:6]]  # as the leaderboard prints them
    before = set(isolated.iterdir())
    assert main([*short, "--no-log", "--bootstrap", "0"]) == 0
    assert set(isolated.iterdir()) == before  # nothing new in the working folder
    line = capsys.readouterr().out.strip().splitlines()[-1]
    folder = Path(line.rsplit(" into ", 1)[1])
    assert folder.parent == isolated / "mlruns" / "comparisons"
    assert {p.name for p in folder.iterdir()} == {
        "compare.png", "compare.csv", "compare.md", "compare_paired.csv", "compare_paired.md"
    }  # fmt: skip
    assert pd.read_csv(folder / "compare.csv")["run_id"].tolist() == [
        sweep["runs"]["logreg"],
        sweep["runs"]["rf"],
    ]

    assert main([*short, "--no-log", "--no-paired", "--out", "mine"]) == 0
    assert sorted(p.name for p in (isolated / "mine").iterdir()) == [
        "compare.csv",
        "compare.md",
        "compare.png",
    ]
