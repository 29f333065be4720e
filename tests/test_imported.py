"""Imported predictions: every kind of mismatch with the data set is a one-line error or a counted
report, checked against the test split of a CIFAKE subset as the folder reader reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fid_bench.errors import FidBenchError
from fid_bench.imported_scores import align_predictions, read_predictions_csv


@pytest.fixture
def reference(cifake_small) -> pd.DataFrame:
    from fid_bench.data.readers import FolderReader

    samples = FolderReader(root=str(cifake_small), name="cifake", cache_dir=None).read()
    test = samples.table[samples.table["split"] == "test"]
    return pd.DataFrame({"id": test["id"], "label": test["label"], "split": "test", "group": test["group"]})


def _write(tmp_path, text: str):
    path = tmp_path / "preds.csv"
    path.write_text(text)
    return path


def test_a_complete_file_lines_up_in_reference_order(reference, tmp_path) -> None:
    rng = np.random.default_rng(0)
    shuffled = reference.sample(frac=1.0, random_state=1)
    scores = rng.uniform(0, 1, len(shuffled))
    path = tmp_path / "p.csv"
    pd.DataFrame({"id": shuffled["id"], "score": scores, "label": shuffled["label"]}).to_csv(
        path, index=False
    )
    frame, report = align_predictions(read_predictions_csv(path), reference)
    assert frame["id"].tolist() == reference["id"].tolist()
    expected = dict(zip(shuffled["id"], scores, strict=True))
    assert frame["score"].tolist() == pytest.approx([expected[i] for i in reference["id"]])
    assert (report.n_matched, len(report.missing), report.unknown) == (200, 0, [])


def test_missing_and_unknown_ids_are_counted_never_dropped_silently(reference, tmp_path, caplog) -> None:
    kept = reference.iloc[3:]
    preds = pd.DataFrame({"id": [*kept["id"], "elsewhere/1.jpg"], "score": 0.5})
    frame, report = align_predictions(preds, reference)
    assert len(frame) == len(reference) - 3
    assert report.missing["id"].tolist() == reference["id"].iloc[:3].tolist()
    assert report.unknown == ["elsewhere/1.jpg"]
    assert report.metrics()["import/n_missing_test"] == 3
    assert "missing from the file: 3 test" in report.summary()
    with pytest.raises(FidBenchError, match="3 reference row"):
        align_predictions(preds, reference, missing="error")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,score\na,0.1\n", r"lacks \['id'\]"),
        ("id,score\ntest/FAKE/x.jpg,abc\n", "not numbers"),
        ("id,score\ntest/FAKE/x.jpg,\n", "empty or not numbers"),
        ("id,score\ntest/FAKE/x.jpg,1.5\ntest/REAL/y.jpg,-0.2\n", r"2 score\(s\) outside \[0, 1\]"),
        ("id,score\na,0.1\na,0.2\n", "appear more than once"),
        ("id,score,label\na,0.1,2\n", "not 0 or 1"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text: str, message: str) -> None:
    with pytest.raises(FidBenchError, match=message) as err:
        read_predictions_csv(_write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_label_disagreement_is_refused(reference) -> None:
    preds = pd.DataFrame({"id": reference["id"], "score": 0.5, "label": reference["label"]})
    preds.loc[preds.index[:2], "label"] = 1 - preds["label"].iloc[:2]
    with pytest.raises(FidBenchError, match="2 label"):
        align_predictions(preds, reference)


def test_a_file_about_other_images_is_refused(reference) -> None:
    with pytest.raises(FidBenchError, match="scores none of the 200 test rows"):
        align_predictions(pd.DataFrame({"id": ["a", "b"], "score": [0.1, 0.2]}), reference)


def test_a_file_without_validation_scores_is_said_so_and_partial_validation_is_listed(reference) -> None:
    """Test-only files are the usual case: one phrase, not every val id called missing; a file that
    scores some validation rows but not all gets them counted like missing test rows."""
    val = reference.iloc[:20].assign(split="val", id=lambda f: "val/" + f["id"])
    rows = pd.concat([val, reference], ignore_index=True)
    test_only = pd.DataFrame({"id": reference["id"], "score": 0.5})
    _, report = align_predictions(test_only, rows)
    assert "no validation rows scored (20 val ids in missing_ids.csv)" in report.summary()
    assert "missing from the file" not in report.summary()
    assert report.metrics()["import/n_missing_val"] == 20
    some_val = pd.concat([test_only, pd.DataFrame({"id": val["id"].iloc[:15], "score": 0.5})])
    _, report = align_predictions(some_val, rows)
    assert "missing from the file: 5 val" in report.summary()
    assert "no validation rows" not in report.summary()
