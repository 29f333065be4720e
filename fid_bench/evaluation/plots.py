"""PNG plots of a scores frame (test-split rows only): ROC, precision-recall, confusion,
reliability, overlays.

matplotlib is imported inside each function and driven through its object API (``Figure`` +
the Agg canvas) rather than ``pyplot``: no global figure state and no backend switch, so plotting
is safe in headless jobs and never changes the backend of a caller that already uses pyplot.

Every function returns the numbers it drew, so callers (and tests) can check the picture's data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fid_bench.errors import FidBenchError, first_line

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 100


@dataclass(frozen=True)
class Curve:
    """One drawn curve: ``x``/``y`` points and the area summarising it (NaN when undefined)."""

    x: np.ndarray
    y: np.ndarray
    area: float
    n: int  # test rows behind the curve

    @property
    def defined(self) -> bool:
        return self.x.size > 0


def _test_rows(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in ("label", "score", "split") if c not in scores.columns]
    if missing:
        raise FidBenchError(f"plots: scores frame lacks column(s) {missing}")
    test = scores[scores["split"] == "test"]
    y, s = test["label"].to_numpy(dtype=np.int64), test["score"].to_numpy(dtype=np.float64)
    if not np.isin(y, (0, 1)).all():
        raise FidBenchError(
            f"plots: test labels must be 0 or 1, got {np.unique(y[~np.isin(y, (0, 1))]).tolist()}"
        )
    if not np.isfinite(s).all():
        raise FidBenchError(f"plots: {int((~np.isfinite(s)).sum())} test score(s) are NaN or infinite")
    return y, s


def roc_points(scores: pd.DataFrame) -> Curve:
    """ROC of the test rows: x = false positive rate, y = true positive rate, area = ROC-AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y, s = _test_rows(scores)
    if y.size == 0 or y.min() == y.max():
        log.warning("ROC undefined: %d test rows with %d class(es)", y.size, np.unique(y).size)
        return Curve(np.empty(0), np.empty(0), float("nan"), int(y.size))
    fpr, tpr, _ = roc_curve(y, s)
    return Curve(fpr, tpr, float(roc_auc_score(y, s)), int(y.size))


def pr_points(scores: pd.DataFrame) -> Curve:
    """Precision-recall of the test rows: x = recall, y = precision, area = average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, s = _test_rows(scores)
    if y.size == 0 or y.sum() == 0:
        log.warning("precision-recall undefined: %d test rows, none positive", y.size)
        return Curve(np.empty(0), np.empty(0), float("nan"), int(y.size))
    precision, recall, _ = precision_recall_curve(y, s)
    return Curve(recall, precision, float(average_precision_score(y, s)), int(y.size))


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _undefined(ax: Axes, what: str, n: int) -> None:
    why = "no test rows" if n == 0 else f"{n} test rows, one class"
    ax.text(0.5, 0.5, f"{what} undefined\n({why})", ha="center", va="center")


def _draw_roc(ax: Axes, curves: dict[str, Curve], title: str) -> None:
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for label, c in curves.items():
        if c.defined:
            # straight segments: the area under them is exactly the (trapezoidal) ROC-AUC, ties included
            ax.plot(c.x, c.y, label=f"{label} (AUC {c.area:.3f})")
        elif len(curves) == 1:
            _undefined(ax, "ROC", c.n)
    ax.set(
        xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title
    )
    if any(c.defined for c in curves.values()):
        ax.legend(loc="lower right", fontsize="small")


def _draw_pr(ax: Axes, curves: dict[str, Curve], title: str) -> None:
    for label, c in curves.items():
        if c.defined:
            ax.plot(c.x, c.y, drawstyle="steps-post", label=f"{label} (AP {c.area:.3f})")
        elif len(curves) == 1:
            _undefined(ax, "precision-recall", c.n)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title=title)
    if any(c.defined for c in curves.values()):
        ax.legend(loc="lower left", fontsize="small")


def roc_curve_png(scores: pd.DataFrame, path: str | Path, title: str = "ROC (test)") -> Curve:
    """Write the test-split ROC curve to ``path``; return the drawn points and the AUC."""
    curve = roc_points(scores)
    fig = _new_figure(5, 5)
    _draw_roc(fig.add_subplot(), {"model": curve}, title)
    _save(fig, path)
    return curve


def pr_curve_png(scores: pd.DataFrame, path: str | Path, title: str = "Precision-recall (test)") -> Curve:
    """Write the test-split precision-recall curve to ``path``; return the drawn points and AP."""
    curve = pr_points(scores)
    fig = _new_figure(5, 5)
    _draw_pr(fig.add_subplot(), {"model": curve}, title)
    _save(fig, path)
    return curve


def confusion_png(
    scores: pd.DataFrame, threshold: float, path: str | Path, title: str | None = None
) -> np.ndarray:
    """Write the test-split confusion matrix at ``score >= threshold``; return it.

    The matrix is ``[[TN, FP], [FN, TP]]``: rows = true label (0 real, 1 generated), columns =
    predicted label.
    """
    if not np.isfinite(threshold):
        raise FidBenchError(f"confusion plot: threshold must be a finite number, got {threshold}")
    y, s = _test_rows(scores)
    pred = (s >= threshold).astype(np.int64)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (y, pred), 1)

    fig = _new_figure(4.5, 4)
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    total = max(int(matrix.sum()), 1)
    for (i, j), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        ax.text(
            j,
            i,
            f"{count}\n{count / total:.1%}",
            ha="center",
            va="center",
            color="white" if dark else "black",
        )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["real", "generated"],
        yticklabels=["real", "generated"],
        xlabel="predicted",
        ylabel="true",
        title=title or f"Confusion (test, threshold {threshold:.3g})",
    )
    _save(fig, path)
    return matrix


def overlay_curves_png(
    named_scores: dict[str, pd.DataFrame], path: str | Path, title: str | None = None
) -> dict[str, tuple[Curve, Curve]]:
    """Compare runs: ROC (left) and precision-recall (right) of each run's test rows in one PNG.

    Returns ``{name: (roc, pr)}``. A run whose curve is undefined is left out of that panel.
    """
    if not named_scores:
        raise FidBenchError("overlay plot: no runs to compare")
    curves = {name: (roc_points(df), pr_points(df)) for name, df in named_scores.items()}
    fig = _new_figure(11, 5)
    left, right = fig.subplots(1, 2)
    _draw_roc(left, {k: v[0] for k, v in curves.items()}, "ROC (test)")
    _draw_pr(right, {k: v[1] for k, v in curves.items()}, "Precision-recall (test)")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return curves


def reliability_png(
    scores: pd.DataFrame, path: str | Path, n_bins: int = 15, title: str = "Reliability (test)"
) -> pd.DataFrame:
    """Write the test rows' reliability diagram: positive rate against mean score per bin.

    The bins are ``metrics.reliability_bins`` (the ones ``ece`` is computed on); the lower panel
    shows how many rows each bin holds. Returns the bins drawn.
    """
    from fid_bench.evaluation.metrics import expected_calibration_error, reliability_bins

    y, s = _test_rows(scores)
    bins = reliability_bins(y, s, n_bins)
    fig = _new_figure(5, 6)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfectly calibrated")
    used = bins[bins["n"] > 0]
    if len(used):
        ece = expected_calibration_error(y, s, n_bins)
        top.plot(used["mean_score"], used["positive_rate"], marker="o", label=f"model (ECE {ece:.3f})")
        top.legend(loc="upper left", fontsize="small")
    else:
        top.text(0.5, 0.5, "reliability undefined\n(no test rows)", ha="center", va="center")
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="share generated", title=title)
    bottom.bar(bins["low"], bins["n"], width=1.0 / n_bins, align="edge", edgecolor="white")
    bottom.set(xlabel="score (probability of generated)", ylabel="rows")
    _save(fig, path)
    return bins


def score_plots(
    scores: pd.DataFrame, out: Path, *, title: str, threshold: float | None, calibration_bins: int = 15
) -> list[str]:
    """A scored run's figures in folder ``out``: ``roc.png``, ``pr.png``, ``reliability.png`` and,
    when ``threshold`` is a number, ``confusion.png``.

    A figure that cannot be drawn is left out with a warning: returns those as ``"file: error"``.
    """
    jobs = [
        ("roc.png", lambda p: roc_curve_png(scores, p, f"ROC {title}")),
        ("pr.png", lambda p: pr_curve_png(scores, p, f"PR {title}")),
        ("reliability.png", lambda p: reliability_png(scores, p, calibration_bins, f"Reliability {title}")),
    ]
    if threshold is None or math.isnan(threshold):
        log.warning("no threshold in metrics; confusion matrix not drawn")
    else:
        jobs.append(("confusion.png", lambda p: confusion_png(scores, threshold, p)))
    failed = []
    for filename, draw in jobs:
        try:
            draw(out / filename)
        except Exception as err:  # noqa: BLE001 - a broken plot must not fail a finished job
            log.warning("plot %s not drawn: %s", filename, first_line(err))
            failed.append(f"{filename}: {first_line(err)}")
    return failed


def cost_quality_png(
    points: pd.DataFrame, path: str | Path, title: str = "ROC-AUC against extraction speed"
) -> pd.DataFrame:
    """The cost-quality frontier a user picks an encoder from: one point per encoder.

    ``points`` has ``encoder``, ``images_per_s`` (extraction throughput, ``extract/images_per_s``)
    and ``roc_auc`` columns, one row per run; runs that extracted nothing (speed 0: every feature
    cached) take their encoder's speed from the runs that did, and each encoder is drawn at its best
    ROC-AUC and its median speed. Returns the points drawn; an encoder never timed is left out.
    """
    need = {"encoder", "images_per_s", "roc_auc"}
    if not need <= set(points.columns):
        raise FidBenchError(f"cost-quality plot: need columns {sorted(need)}, got {sorted(points.columns)}")
    timed = points[points["images_per_s"] > 0]
    speed = timed.groupby("encoder")["images_per_s"].median()
    drawn = points.groupby("encoder")["roc_auc"].max().to_frame().join(speed, how="inner").reset_index()
    fig = _new_figure(6, 4.5)
    ax = fig.subplots()
    if drawn.empty:
        ax.text(
            0.5,
            0.5,
            f"no run with a measured extraction speed\n({len(points)} runs)",
            ha="center",
            va="center",
        )
    else:
        ax.scatter(drawn["images_per_s"], drawn["roc_auc"])
        for _, r in drawn.iterrows():
            ax.annotate(
                str(r["encoder"]),
                (r["images_per_s"], r["roc_auc"]),
                textcoords="offset points",
                xytext=(4, 4),
            )
        ax.set_xscale("log")
        ax.set_xlabel("extraction, images/s (log scale)")
        ax.set_ylabel("ROC-AUC (best run)")
        ax.grid(alpha=0.3)
    ax.set_title(title)
    _save(fig, path)
    return drawn
