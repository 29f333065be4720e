"""``fid-bench ensemble`` and ``fid-bench import-predictions`` on two real job runs of a CIFAKE subset:
the new runs' kinds, their place on the leaderboard, ``predict`` on an ensemble and its refusal of an
imported run, test labels never reaching a stacked combiner, and one-line errors."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fid_bench.cli import main
from fid_bench.tracking.kinds import MODEL_KINDS, NO_MODEL_KINDS, RANKED_KINDS, UNRANKED_KINDS, RunKind


@pytest.fixture(autouse=True)
def _forget_global_tracking_uri() -> Iterator[None]:
    """Jobs, model logging and loading set MLflow's process-wide URI: never leak a test's store."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def jobs_store(tmp_path_factory: pytest.TempPathFactory, empty_store: Path, cifake_small: Path) -> dict:
    """Two real job runs (spectrum features + logreg, + knn) on the CIFAKE subset, made once for the
    module in a store of their own; each test works on a copy of its database."""
    import mlflow

    from fid_bench.config import compose
    from fid_bench.jobs.experiment import run_job

    folder = tmp_path_factory.mktemp("jobs")
    db = folder / "mlflow.db"
    shutil.copyfile(empty_store, db)
    ids = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # the jobs' output folder and relative artifact root
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        mp.setenv("FID_BENCH_CACHE_DIR", str(folder / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mlflow.set_tracking_uri(f"sqlite:///{db}")
        for classifier in ("logreg", "knn"):
            cfg = compose(
                [
                    "data=folder",
                    f"data.root={cifake_small}",
                    f"classifier={classifier}",
                    "features.num_workers=0",
                ]
            )
            run_job(cfg)
            client = mlflow.MlflowClient()
            exp = client.get_experiment_by_name("folder")
            (run,) = client.search_runs(
                [exp.experiment_id], filter_string=f"tags.classifier = '{classifier}'"
            )
            ids[classifier] = run.info.run_id
        mlflow.set_tracking_uri(None)
    return {"db": db, "ids": ids}


@pytest.fixture
def store(isolated: Path, jobs_store: dict) -> dict:
    """The test's own copy of the jobs' store (the database MLFLOW_TRACKING_URI names)."""
    import mlflow

    shutil.copyfile(jobs_store["db"], isolated / "mlruns" / "mlflow.db")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return jobs_store["ids"]


def _client():
    import mlflow

    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _scores(run_id: str) -> pd.DataFrame:
    from fid_bench.tracking.run_queries import run_scores

    client = _client()
    return run_scores(client, client.get_run(run_id))


def _logged_run(out: str, kind: str) -> str:
    match = re.search(rf"logged {kind} run ([0-9a-f]{{32}})", out)
    assert match, out
    return match.group(1)


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], lines
    return lines[0]


def _leaderboard_ids(capsys) -> list[str]:
    assert main(["leaderboard", "--experiment", "folder", "--top", "0", "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))["run_id"].tolist()


def test_kind_sets() -> None:
    assert RunKind.ENSEMBLE in MODEL_KINDS and RunKind.ENSEMBLE in RANKED_KINDS
    assert RunKind.IMPORTED in RANKED_KINDS and RunKind.IMPORTED in NO_MODEL_KINDS
    assert RunKind.JOB in MODEL_KINDS
    assert {RunKind.PARENT, RunKind.STUDY, RunKind.TRIAL, RunKind.COMPARISON} == UNRANKED_KINDS


def test_ensemble_run_is_ranked_and_predict_reproduces_its_test_scores(
    store: dict, cifake_small: Path, isolated: Path, capsys
) -> None:
    a, b = store["logreg"], store["knn"]
    assert main(["ensemble", a, b, "--method", "stack", "--name", "lr+knn"]) == 0
    out = capsys.readouterr().out
    ens = _logged_run(out, "ensemble")
    assert "stack of 2 runs" in out and "chosen on 80 validation rows" in out

    run = _client().get_run(ens)
    assert run.data.tags["fid_bench.kind"] == "ensemble"
    assert run.data.tags["fid_bench.members"] == f"{a},{b}"
    assert run.data.params["method"] == "stack" and run.data.params["members"] == f"{a},{b}"
    assert {"combiner.weight_0", "combiner.weight_1", "combiner.intercept"} <= set(run.data.params)
    m = run.data.metrics
    assert m["roc_auc_ci_low"] <= m["roc_auc"] <= m["roc_auc_ci_high"] and m["n_test"] == 200
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"validation", "test"}  # the members' rows, as their digests
    logged = _scores(ens)
    assert (logged["split"] == "val").sum() == 80 and (logged["split"] == "test").sum() == 200
    assert ens in _leaderboard_ids(capsys)

    # predict --run <ensemble>: the members' models run on the images and are combined
    test = logged[logged["split"] == "test"].sort_values("id").iloc[::20]
    images = isolated / "imgs"
    for rel in test["id"]:
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cifake_small / rel, images / rel)
    out_csv = isolated / "ens_pred.csv"
    assert (
        main(["predict", "--run", ens, "--images", str(images), "--out", str(out_csv), "--no-progress"]) == 0
    )
    predicted = pd.read_csv(out_csv, dtype={"id": str}).set_index("id")["score"]
    assert len(predicted) == len(test) == 10
    np.testing.assert_allclose(predicted[test["id"]].to_numpy(), test["score"].to_numpy(), atol=1e-6)

    # an ensemble holds a model: it can be promoted like a job
    capsys.readouterr()
    assert main(["promote", "--run", ens, "--name", "fid-ensemble"]) == 0
    assert "fid-ensemble version 1" in capsys.readouterr().out


def test_stacked_ensemble_never_sees_a_test_label(store: dict, capsys) -> None:
    from fid_bench.ensemble_scores import ensemble_scores

    a, b = store["logreg"], store["knn"]
    assert main(["ensemble", a, b, "--method", "stack"]) == 0
    logged = _scores(_logged_run(capsys.readouterr().out, "ensemble"))
    logged_test = logged[logged["split"] == "test"].set_index("id")["score"]
    frames = {a: _scores(a), b: _scores(b)}

    def permuted(split: str, seed: int) -> dict[str, pd.DataFrame]:
        # the same permutation of one split's labels in every member, so the members still agree
        rows = frames[a][frames[a]["split"] == split]
        new = dict(
            zip(rows["id"], np.random.default_rng(seed).permutation(rows["label"].to_numpy()), strict=True)
        )
        out = {}
        for name, frame in frames.items():
            frame = frame.copy()
            on = frame["split"] == split
            frame.loc[on, "label"] = frame.loc[on, "id"].map(new)
            out[name] = frame
        return out

    def test_scores(members: dict[str, pd.DataFrame]) -> pd.Series:
        scores, _ = ensemble_scores(members, "stack", seed=42)
        return scores[scores["split"] == "test"].set_index("id")["score"][logged_test.index]

    shuffled_test = permuted("test", 0)
    assert (shuffled_test[a]["label"] != frames[a]["label"]).sum() > 50
    np.testing.assert_allclose(test_scores(shuffled_test), logged_test.to_numpy(), rtol=0, atol=1e-12)
    # the validation labels do reach the combiner: shuffling them changes the test scores
    assert np.abs(test_scores(permuted("val", 0)).to_numpy() - logged_test.to_numpy()).max() > 0.05


def test_ensemble_member_errors_are_one_line(store: dict, isolated: Path, capsys) -> None:
    import mlflow

    from fid_bench.tracking.pyfunc import log_predictor_model
    from tests.tracking_support import BrightnessPredictor

    a = store["logreg"]
    assert main(["ensemble", a, "--method", "mean"]) == 2
    assert "at least two" in _one_error_line(capsys)
    assert main(["ensemble", a, a, "--method", "mean"]) == 1
    assert "given twice" in _one_error_line(capsys)
    assert main(["ensemble", a, "nope", "--method", "mean"]) == 1
    assert "unknown run 'nope'" in _one_error_line(capsys)

    # a run with a model, scored on fewer test rows than the jobs
    short = _scores(a)
    short = short.drop(short.index[short["split"] == "test"][:5])
    path = isolated / "predictions.csv"
    short.to_csv(path, index=False)
    exp = _client().get_experiment_by_name("folder").experiment_id
    with mlflow.start_run(experiment_id=exp, tags={"fid_bench.kind": "job"}) as other:
        log_predictor_model(BrightnessPredictor(), other.info.run_id)
        mlflow.log_artifact(str(path))
    n_runs = len(_client().search_runs([exp]))
    assert main(["ensemble", a, other.info.run_id, "--method", "mean"]) == 1
    assert "not scored on the same test rows" in _one_error_line(capsys)
    assert len(_client().search_runs([exp])) == n_runs  # a refused ensemble leaves no run behind


def test_import_like_a_run_reports_missing_ids_and_holds_no_model(
    store: dict, cifake_small: Path, isolated: Path, capsys
) -> None:
    from fid_bench.evaluation.metrics import evaluate_scores
    from fid_bench.tracking.run_queries import make_client, resolve_run

    a = store["logreg"]
    test = _scores(a)
    test = test[test["split"] == "test"]
    dropped = test["id"].iloc[::29].tolist()  # 7 of 200
    kept = test[~test["id"].isin(dropped)]
    path = isolated / "outside.csv"
    kept[["id", "score", "label"]].to_csv(path, index=False)

    assert main(["import-predictions", "--name", "outside-tool", str(path), "--like", a]) == 0
    out = capsys.readouterr().out
    assert (
        f"193 of 193 file rows matched; no validation rows scored (80 val ids in missing_ids.csv); "
        f"missing from the file: {len(dropped)} test" in out
    )
    assert "threshold 0.5000: 0.5 (no validation rows scored)" in out
    imp = _logged_run(out, "imported")
    run = _client().get_run(imp)
    assert run.data.tags["fid_bench.kind"] == "imported" and run.data.tags["model"] == "outside-tool"
    assert run.data.tags["fid_bench.reference_run"] == a
    m = run.data.metrics
    assert m["import/n_missing_test"] == len(dropped) == 7 and m["import/n_missing_val"] == 80
    assert m["threshold"] == 0.5 and m["n_test"] == 193
    expected = evaluate_scores(kept.assign(fold=0), threshold=0.5)
    assert m["roc_auc"] == pytest.approx(expected["roc_auc"]) and m["f1_at_threshold"] == pytest.approx(
        expected["f1_at_threshold"]
    )
    assert m["roc_auc_ci_low"] < m["roc_auc"] < m["roc_auc_ci_high"]
    missing = pd.read_csv(
        _client().download_artifacts(imp, "missing_ids.csv", str(isolated)), dtype={"id": str}
    )
    assert sorted(missing.loc[missing["split"] == "test", "id"]) == sorted(dropped)
    assert {"roc.png", "pr.png", "reliability.png", "confusion.png"} <= {
        Path(f.path).name for f in _client().list_artifacts(imp, "plots")
    }
    assert imp in _leaderboard_ids(capsys)

    # never chosen by predict or promote: refused in one line when asked for
    out_csv = isolated / "p.csv"
    images = isolated / "imgs"
    images.mkdir()
    shutil.copyfile(cifake_small / dropped[0], images / "x.jpg")
    assert main(["predict", "--run", imp, "--images", str(images), "--out", str(out_csv)]) == 1
    assert "imported predictions" in _one_error_line(capsys) and not out_csv.exists()
    assert main(["promote", "--run", imp, "--name", "x"]) == 1
    assert "no model" in _one_error_line(capsys)

    # a perfect imported detector tops the leaderboard, yet 'best' is still a run with a model
    perfect = isolated / "perfect.csv"
    test.assign(score=0.05 + 0.9 * test["label"])[["id", "score"]].to_csv(perfect, index=False)
    assert main(["import-predictions", "--name", "oracle", str(perfect), "--like", a]) == 0
    oracle = _logged_run(capsys.readouterr().out, "imported")
    assert _leaderboard_ids(capsys)[0] == oracle
    client = make_client(os.environ["MLFLOW_TRACKING_URI"])
    assert resolve_run(client, "best", experiment="folder", metric="roc_auc").info.run_id in store.values()


def test_import_against_config_rows_reproduces_the_jobs_metrics(
    store: dict, cifake_small: Path, isolated: Path, capsys
) -> None:
    """A file holding a job's own scores, imported against the data set the overrides describe: the
    same rows, the same threshold (chosen on its validation rows) and the same metrics as the job."""
    a = store["logreg"]
    scores = _scores(a)
    path = isolated / "same.csv"
    scores[["id", "score", "label"]].to_csv(path, index=False)
    overrides = ["data=folder", f"data.root={cifake_small}"]
    assert main(["import-predictions", "--name", "logreg-again", str(path), *overrides]) == 0
    out = capsys.readouterr().out
    assert "280 of 280 file rows matched" in out and "missing" not in out
    assert "chosen on 80 validation rows" in out
    imported = _client().get_run(_logged_run(out, "imported"))
    job = _client().get_run(a)
    for key in ("roc_auc", "threshold", "f1_at_threshold", "roc_auc_ci_low", "roc_auc_ci_high", "ece"):
        assert imported.data.metrics[key] == pytest.approx(job.data.metrics[key]), key
    assert imported.data.metrics["import/n_missing_test"] == 0
    assert imported.data.tags["data_fingerprint"] == job.data.tags["data_fingerprint"]
    digests = {(i.tags[0].value, i.dataset.digest) for i in imported.inputs.dataset_inputs}
    assert digests == {(i.tags[0].value, i.dataset.digest) for i in job.inputs.dataset_inputs} - {
        ("train", d.dataset.digest) for d in job.inputs.dataset_inputs if d.tags[0].value == "train"
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name,score\na,0.5\n", "needs columns id,score"),
        ("id,score\ntest/FAKE/0.jpg,1.5\n", "outside [0, 1]"),
        ("id,score\ntest/FAKE/0.jpg,\n", "not numbers"),
    ],
)
def test_bad_prediction_files_are_one_line(
    store: dict, isolated: Path, capsys, text: str, needle: str
) -> None:
    path = isolated / "bad.csv"
    path.write_text(text)
    assert main(["import-predictions", "--name", "x", str(path), "--like", store["logreg"]]) == 1
    assert needle in _one_error_line(capsys)


def test_import_arguments_are_checked(store: dict, isolated: Path, capsys) -> None:
    path = isolated / "p.csv"
    path.write_text("id,score\na,0.5\n")
    assert main(["import-predictions", "--name", "x", str(path)]) == 2
    assert "--like RUN, or data overrides" in _one_error_line(capsys)
    assert main(["import-predictions", "--name", "x", str(path), "data=demo", "--like", "best"]) == 2
    assert "not both" in _one_error_line(capsys)
    assert main(["import-predictions", "--name", "x", str(isolated / "none.csv"), "--like", "best"]) == 1
    assert "file not found" in _one_error_line(capsys)


def test_paired_tests_span_jobs_ensembles_and_imports_on_cifake_rows(store, isolated: Path, capsys) -> None:
    """On real CIFAKE rows: an ensemble and an imported detector are compared with a job by
    ``fid-bench compare`` (DeLong recomputed here from the runs' scores) and marked by the
    leaderboard's ``~top`` test (DeLong against the top run, then Holm, recomputed here)."""
    from fid_bench.evaluation.paired import delong_test, holm

    logreg, knn = store["logreg"], store["knn"]
    assert main(["ensemble", logreg, knn, "--method", "stack"]) == 0
    ensemble = _logged_run(capsys.readouterr().out, "ensemble")
    # a detector from elsewhere: the logreg's test scores blurred by noise, every test row scored
    test = _scores(logreg)
    test = test[test["split"] == "test"]
    noisy = np.clip(test["score"] + np.random.default_rng(0).normal(0, 0.25, len(test)), 0, 1)
    path = isolated / "outside.csv"
    pd.DataFrame({"id": test["id"], "score": noisy}).to_csv(path, index=False)
    assert main(["import-predictions", "--name", "noisy", str(path), "--like", logreg]) == 0
    imported = _logged_run(capsys.readouterr().out, "imported")

    def test_rows(run_id: str) -> pd.DataFrame:
        frame = _scores(run_id)
        return frame[frame["split"] == "test"].set_index("id").sort_index()

    rows = {r: test_rows(r) for r in (logreg, knn, ensemble, imported)}
    assert all(frame.index.equals(rows[logreg].index) for frame in rows.values())
    y = rows[logreg]["label"].to_numpy()

    out = isolated / "cmp.png"
    assert main(["compare", imported, ensemble, "--out", str(out), "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    expected = delong_test(y, rows[imported]["score"].to_numpy(), rows[ensemble]["score"].to_numpy())
    paired = pd.read_csv(isolated / "cmp_paired.csv").set_index("metric")
    assert paired.loc["roc_auc", ["a", "b", "diff", "p_value"]].tolist() == pytest.approx(
        [expected.a, expected.b, expected.diff, expected.p_value]
    )
    assert "ROC-AUC: A − B" in printed and "DeLong" in printed

    assert main(["leaderboard", "--experiment", "folder", "--top", "0", "--format", "csv"]) == 0
    board = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("run_id")
    assert set(board.index) == set(rows)
    aucs = {r: delong_test(y, rows[r]["score"].to_numpy(), rows[r]["score"].to_numpy()).a for r in rows}
    top = max(aucs, key=aucs.get)
    others = [r for r in rows if r != top]
    raw = [delong_test(y, rows[r]["score"].to_numpy(), rows[top]["score"].to_numpy()).p_value for r in others]
    adjusted = holm(raw)
    assert board.loc[others, "roc_auc_p_to_top"].tolist() == pytest.approx(raw)
    assert board.loc[others, "roc_auc_p_holm_to_top"].tolist() == pytest.approx(list(adjusted))
    assert board.loc[others, "tied_with_top"].tolist() == [bool(p >= 0.05) for p in adjusted]
    assert bool(board.loc[top, "tied_with_top"]) is True
