"""Paired tests between real runs: ``fid-bench compare A B``'s report and the leaderboard's ``~top``
column. The runs are real jobs (tiny demo data, spectrum features) logged to the test's own store;
the expected figures are recomputed here from the runs' ``predictions.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from fid_bench.commands import compare_command, leaderboard_command
from fid_bench.evaluation.paired import delong_test, holm

# 200 labelled demo images: 40 test rows, enough for the tests to tell a weak detector apart (on the
# easy demo set: the paired tests need one detector clearly better than the other)
DATA = [
    "data.reader.n_real=100", "data.reader.n_fake=100", "data.reader.difficulty=easy", "eval.bootstrap=0",
    "tracking.log_model=false",
]  # fmt: skip
GOOD = ["classifier=logreg"]
ALSO_GOOD = ["classifier=logreg", "classifier.estimator.C=0.5"]
WEAK = ["classifier=knn", "classifier.estimator.n_neighbors=1"]
# another seed draws another split: other test rows
OTHER_ROWS = ["seed=7", *WEAK]


@pytest.fixture
def job(compose_cfg: Callable) -> Callable[..., str]:
    """Run one real job with these overrides; returns its run id."""
    import mlflow

    from fid_bench.jobs.experiment import run_job

    def ids() -> set[str]:
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("demo")
        return (
            {r.info.run_id for r in client.search_runs([experiment.experiment_id])} if experiment else set()
        )

    def _job(*overrides: str) -> str:
        before = ids()
        run_job(compose_cfg(*DATA, *overrides))
        (new,) = ids() - before
        return new

    return _job


def _test_rows(run_id: str) -> pd.DataFrame:
    import mlflow

    path = mlflow.MlflowClient().download_artifacts(run_id, "predictions.csv")
    frame = pd.read_csv(path, dtype={"id": str})
    return frame[frame["split"] == "test"].set_index("id")


def _delong(run_a: str, run_b: str):
    """DeLong straight from the two predictions files, rows matched by id here."""
    a, b = _test_rows(run_a), _test_rows(run_b)
    assert sorted(a.index) == sorted(b.index)
    b = b.loc[a.index]
    return delong_test(a["label"].to_numpy(), a["score"].to_numpy(), b["score"].to_numpy())


def test_compare_two_runs_reports_delong_of_their_predictions(job, isolated: Path, capsys) -> None:
    import mlflow

    good, weak = job(*GOOD), job(*WEAK)
    out = isolated / "cmp" / "ab.png"
    out.parent.mkdir()
    code = compare_command.main([good, weak, "--out", str(out), "--bootstrap", "200", "--seed", "3"])
    printed, err = capsys.readouterr()
    assert code == 0, err

    expected = _delong(good, weak)
    assert expected.p_value < 0.05 and expected.diff > 0.1  # the weak detector is clearly worse
    verdict = next(line for line in printed.splitlines() if line.startswith("ROC-AUC: A"))
    ci = f"[{expected.ci_low:.4f}, {expected.ci_high:.4f}]"
    assert f"= {expected.diff:+.4f} {ci} (95 % CI), DeLong p" in verdict
    p = "< 0.001" if expected.p_value < 0.001 else f"= {expected.p_value:.3f}"
    assert verdict.endswith(f"DeLong p {p}: A is better at alpha 0.05")

    table = pd.read_csv(out.with_name("ab_paired.csv")).set_index("metric")
    assert list(table.index) == [
        "roc_auc",
        "f1_at_threshold",
        "accuracy_at_threshold",
        "tpr_at_fpr_1pct",
        "tpr_at_fpr_5pct",
    ]
    roc = table.loc["roc_auc"]
    assert roc["method"] == "DeLong" and roc["n"] == 40
    assert (roc["diff"], roc["ci_low"], roc["ci_high"], roc["p_value"]) == pytest.approx(
        (expected.diff, expected.ci_low, expected.ci_high, expected.p_value)
    )
    # A's and B's own figures are what each run logged on its test rows, each at its own threshold
    client = mlflow.MlflowClient()
    logged = {r: client.get_run(r).data.metrics for r in (good, weak)}
    assert roc["a"] == pytest.approx(logged[good]["roc_auc"]) and roc["b"] == pytest.approx(
        logged[weak]["roc_auc"]
    )
    for metric in ("f1_at_threshold", "accuracy_at_threshold"):
        if metric == "f1_at_threshold":
            own = {r: logged[r][metric] for r in (good, weak)}
        else:  # the logged "accuracy" is at 0.5; the paired row is at each run's own threshold
            own = {
                r: float(((rows["score"] >= logged[r]["threshold"]) == rows["label"]).mean())
                for r, rows in ((good, _test_rows(good)), (weak, _test_rows(weak)))
            }
        assert table.loc[metric, "a"] == pytest.approx(own[good])
        assert table.loc[metric, "b"] == pytest.approx(own[weak])
        assert table.loc[metric, "method"] == "paired bootstrap"
        assert table.loc[metric, "ci_low"] <= table.loc[metric, "diff"] <= table.loc[metric, "ci_high"]
    assert any(line.startswith("| roc_auc | 0.") for line in printed.splitlines())
    assert "paired bootstrap: 200 resamples, seed 3" in printed

    # two runs without a shared parent: a comparison run of their own, with the key figures
    target = client.get_run(printed.split("logged to run ")[1].split()[0])
    assert target.data.tags["fid_bench.kind"] == "comparison"
    assert target.data.metrics["paired/roc_auc_p"] == pytest.approx(expected.p_value)
    assert target.data.metrics["paired/roc_auc_diff"] == pytest.approx(expected.diff)
    assert target.data.params["paired/run_a"] == good and target.data.params["paired/bootstrap"] == "200"
    assert {a.path for a in client.list_artifacts(target.info.run_id, "comparison")} >= {
        "comparison/ab_paired.csv",
        "comparison/ab_paired.md",
    }

    # B against A: the difference and its interval flip sign, the p-value stays
    code = compare_command.main([weak, good, "--out", str(out), "--no-log", "--bootstrap", "0"])
    flipped = pd.read_csv(out.with_name("ab_paired.csv")).set_index("metric")
    assert code == 0 and list(flipped.index) == ["roc_auc"]  # --bootstrap 0: DeLong only
    assert flipped.loc["roc_auc", "diff"] == pytest.approx(-expected.diff)
    assert flipped.loc["roc_auc", "ci_high"] == pytest.approx(-expected.ci_low)
    assert flipped.loc["roc_auc", "p_value"] == pytest.approx(expected.p_value)
    assert "B is better at alpha 0.05" in capsys.readouterr().out


def test_compare_refuses_runs_on_other_test_rows_in_one_line(job, isolated: Path, capsys) -> None:
    import mlflow

    good, other, folds = job(*GOOD), job(*OTHER_ROWS), job(*GOOD, "cv.folds=3")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("demo").experiment_id
    n_runs = len(client.search_runs([experiment]))
    out = isolated / "x.png"
    for pair, needle in (
        ([good, other], "were not scored on the same test rows"),
        ([good, folds], "is cross-validated (its test rows come from 3 folds"),
    ):
        code = compare_command.main([*pair, "--out", str(out)])
        printed, err = capsys.readouterr()
        assert code == 1, printed
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
        assert err.startswith("fid-bench compare: error: run") and "--no-paired" in err
    # refused before anything was written or logged
    assert not out.exists()
    assert len(client.search_runs([experiment])) == n_runs

    # the curves alone are still fine, and so is the overlay of more than two runs
    assert compare_command.main([good, other, "--out", str(out), "--no-log", "--no-paired"]) == 0
    assert out.exists() and not out.with_name("x_paired.csv").exists()
    assert compare_command.main([good, other, folds, "--out", str(out), "--no-log"]) == 0
    assert "no paired report: it compares exactly two runs" in capsys.readouterr().out


def _leaderboard(capsys, *argv: str) -> tuple[str, list[dict[str, str]]]:
    assert leaderboard_command.main(["--experiment", "demo", *argv]) == 0
    text = capsys.readouterr().out
    assert leaderboard_command.main(["--experiment", "demo", "--format", "csv", *argv]) == 0
    return text, list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_leaderboard_marks_runs_tied_with_the_top(job, capsys) -> None:
    import mlflow

    runs = {"good": job(*GOOD), "also_good": job(*ALSO_GOOD)}
    auc = {k: mlflow.MlflowClient().get_run(r).data.metrics["roc_auc"] for k, r in runs.items()}
    best = max(auc, key=auc.get)
    # the best job again: the same scores, so the top run and its twin are the first two rows
    runs["rerun"] = job(*(GOOD if best == "good" else ALSO_GOOD))
    runs["weak"] = job(*WEAK)
    runs["other_rows"] = job(*OTHER_ROWS)
    names = {v: k for k, v in runs.items()}
    text, rows = _leaderboard(capsys)
    by_name = {names[r["run_id"]]: r for r in rows}
    # the runs on the shared rows, best first; the run on other rows ranks below the best of them
    shared = [names[r["run_id"]] for r in rows if names[r["run_id"]] != "other_rows"]
    assert shared[-1] == "weak" and set(shared[:3]) == {"good", "rerun", "also_good"}
    top = shared[0]
    # the best detector and its rerun (the same scores) lead; a run whose ROC-AUC ties theirs exactly
    # (the other logistic regression can) may stand among them, in any order
    first = [n for n in shared if float(by_name[n]["roc_auc"]) == pytest.approx(auc[best], abs=1e-12)]
    assert names[rows[0]["run_id"]] == top and shared[: len(first)] == first
    assert {best, "rerun"} <= set(first)
    twin = "rerun" if top != "rerun" else best

    lines = text.splitlines()
    header = lines[0].split()
    assert header[header.index("roc_auc") + 1] == "~top"
    marks = {names[r["run_id"]]: r["tied_with_top"] for r in rows}
    assert marks[top] == "True"
    assert marks["good"] == marks["rerun"] == marks["also_good"] == "True"
    assert marks["weak"] == "False"
    assert (
        marks["other_rows"] == ""
        and "not scored on the same test rows" in by_name["other_rows"]["paired_note"]
    )
    column = header.index("~top")
    cells = {
        names[next(r for r in runs.values() if r.startswith(line.split()[1]))]: line for line in lines[2:7]
    }
    assert cells[top].split()[column] == "top"
    assert "~" not in cells["weak"] and "top" not in cells["weak"]  # blank: significantly worse
    for name in {"good", "rerun", "also_good"} - {top}:
        assert cells[name].split()[column] == "~"
    assert cells["other_rows"].split()[column] == "n/a"
    footer = lines[7]
    assert footer.startswith("~ : not significantly different from the top run in ROC-AUC")
    assert "DeLong, Holm-adjusted, alpha 0.05, 4 runs on the same 40 test rows" in footer

    # the p-values are DeLong against the top run, straight from the predictions, then Holm-adjusted
    others = [n for n in shared if n != top]
    raw = [_delong(runs[n], runs[top]).p_value for n in others]
    for name, p, p_holm in zip(others, raw, holm(raw), strict=True):
        assert float(by_name[name]["roc_auc_p_to_top"]) == pytest.approx(p)
        assert float(by_name[name]["roc_auc_p_holm_to_top"]) == pytest.approx(p_holm)
    assert float(by_name["weak"]["roc_auc_p_holm_to_top"]) < 0.05
    # identical scores: no difference at all
    assert float(by_name[twin]["roc_auc_diff_to_top"]) == 0.0
    assert float(by_name[twin]["roc_auc_p_to_top"]) == 1.0

    # only the shown rows are read and tested
    text, rows = _leaderboard(capsys, "--top", "2")
    assert "2 runs on the same 40 test rows" in text and len(rows) == 2

    # ranked by another metric: still a ROC-AUC test, and the footer says so
    text, _ = _leaderboard(capsys, "--metric", "f1")
    assert "tested on ROC-AUC, not f1" in text

    # a stricter alpha can only mark more runs as tied
    _, strict = _leaderboard(capsys, "--alpha", "1e-12")
    assert all(r["tied_with_top"] == "True" for r in strict if names[r["run_id"]] != "other_rows")

    text, rows = _leaderboard(capsys, "--no-paired")
    assert "~top" not in text and "DeLong" not in text
    assert "tied_with_top" not in rows[0] and len(rows) == 5


@pytest.mark.parametrize("command", [compare_command, leaderboard_command])
@pytest.mark.parametrize(("value", "message"), [("2", "must be between 0 and 1"), ("x", "expected a number")])
def test_a_bad_alpha_is_one_line(command, value: str, message: str, capsys) -> None:
    args = ["a", "b"] if command is compare_command else []
    assert command.main([*args, "--alpha", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--alpha" in err[0] and message in err[0]
