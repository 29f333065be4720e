"""Plots: valid PNGs of sane size whose drawn data matches the test-split scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn import metrics as skm

from fid_bench.errors import FidBenchError
from fid_bench.evaluation.plots import confusion_png, overlay_curves_png, pr_curve_png, roc_curve_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(seed: int, n: int = 80, signal: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(signal * y + rng.uniform(0, 1 - signal, n), 0, 1)
    split = np.where(np.arange(n) < n // 4, "val", "test")
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "label": y, "score": s, "split": split, "group": "", "fold": 0}
    )


def check_png(path: Path, min_size: tuple[int, int]) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        w, h = img.size
        assert min_size[0] <= w <= 2000 and min_size[1] <= h <= 2000
        pixels = np.asarray(img.convert("L"))
    # something was drawn: not a blank canvas
    assert pixels.std() > 5
    return pixels


def test_roc_png_draws_the_test_rows_curve(tmp_path: Path) -> None:
    df = scores(0)
    out = tmp_path / "plots" / "roc.png"  # parent folder created on demand
    curve = roc_curve_png(df, out, title="ROC")
    check_png(out, (300, 300))
    test = df[df["split"] == "test"]
    fpr, tpr, _ = skm.roc_curve(test["label"], test["score"])
    np.testing.assert_allclose(curve.x, fpr)
    np.testing.assert_allclose(curve.y, tpr)
    assert curve.area == pytest.approx(skm.roc_auc_score(test["label"], test["score"]))
    assert curve.n == len(test)


def test_val_rows_do_not_change_the_curves(tmp_path: Path) -> None:
    df = scores(1)
    shuffled = df.copy()
    val = shuffled["split"] == "val"
    shuffled.loc[val, "score"] = 1 - shuffled.loc[val, "score"]
    a = roc_curve_png(df, tmp_path / "a.png")
    b = roc_curve_png(shuffled, tmp_path / "b.png")
    np.testing.assert_array_equal(a.x, b.x)
    assert a.area == b.area


def test_pr_png_draws_the_test_rows_curve(tmp_path: Path) -> None:
    df = scores(2)
    curve = pr_curve_png(df, tmp_path / "pr.png")
    check_png(tmp_path / "pr.png", (300, 300))
    test = df[df["split"] == "test"]
    precision, recall, _ = skm.precision_recall_curve(test["label"], test["score"])
    np.testing.assert_allclose(curve.x, recall)
    np.testing.assert_allclose(curve.y, precision)
    assert curve.area == pytest.approx(skm.average_precision_score(test["label"], test["score"]))


def test_confusion_png_counts(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "label": [0, 0, 0, 1, 1, 1, 1, 0],
            "score": [0.1, 0.7, 0.2, 0.9, 0.3, 0.65, 0.8, 0.99],
            "split": ["test"] * 7 + ["val"],
        }
    )
    matrix = confusion_png(df, 0.65, tmp_path / "cm.png")
    check_png(tmp_path / "cm.png", (250, 250))
    # TN: 0.1, 0.2 | FP: 0.7 | FN: 0.3 | TP: 0.9, 0.65 (>=), 0.8 ; the val row is ignored
    np.testing.assert_array_equal(matrix, [[2, 1], [1, 3]])
    with pytest.raises(FidBenchError, match="threshold"):
        confusion_png(df, float("nan"), tmp_path / "x.png")


def test_overlay_compares_runs_side_by_side(tmp_path: Path) -> None:
    runs = {"strong": scores(3, signal=0.7), "weak": scores(3, signal=0.1)}
    curves = overlay_curves_png(runs, tmp_path / "overlay.png", title="two runs")
    pixels = check_png(tmp_path / "overlay.png", (800, 300))
    assert pixels.shape[1] > pixels.shape[0]  # two panels side by side
    assert set(curves) == {"strong", "weak"}
    for name, (roc, pr) in curves.items():
        test = runs[name][runs[name]["split"] == "test"]
        assert roc.area == pytest.approx(skm.roc_auc_score(test["label"], test["score"]))
        assert pr.area == pytest.approx(skm.average_precision_score(test["label"], test["score"]))
    assert curves["strong"][0].area > curves["weak"][0].area


def test_single_class_test_rows_still_write_a_png(tmp_path: Path) -> None:
    df = pd.DataFrame({"label": [0, 0, 0], "score": [0.1, 0.5, 0.2], "split": "test"})
    roc = roc_curve_png(df, tmp_path / "roc.png")
    pr = pr_curve_png(df, tmp_path / "pr.png")
    assert math.isnan(roc.area) and not roc.defined
    assert math.isnan(pr.area) and not pr.defined
    check_png(tmp_path / "roc.png", (300, 300))
    check_png(tmp_path / "pr.png", (300, 300))
    curves = overlay_curves_png({"one-class": df, "ok": scores(4)}, tmp_path / "o.png")
    assert not curves["one-class"][0].defined and curves["ok"][0].defined


def test_plots_leave_no_open_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    roc_curve_png(scores(5), tmp_path / "roc.png")
    overlay_curves_png({"a": scores(5)}, tmp_path / "o.png")
    # figures built through the object API are not registered with pyplot, so nothing leaks
    assert plt.get_fignums() == before
