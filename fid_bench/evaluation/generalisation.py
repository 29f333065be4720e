"""Evaluation beyond the in-distribution hold-out: extra data sets, test-time perturbations, groups.

Everything here goes through the fitted model's ``Predictor.predict_paths``, so both tracks are
evaluated the same way, and through ``compute_metrics`` with the threshold chosen on validation
data, so the numbers sit next to the in-distribution ones under their own prefix
(``shoes/roc_auc``, ``jpeg75/roc_auc``, ``group/sd14/roc_auc``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fid_bench.contract import Predictor
from fid_bench.data.decode import load_rgb
from fid_bench.data.job_inputs import ExtraSet
from fid_bench.evaluation import metric_registry
from fid_bench.evaluation.metrics import compute_metrics
from fid_bench.evaluation.perturb import parse_perturbation

log = logging.getLogger(__name__)

# The metrics repeated under each prefix: the threshold-free ones plus F1 at the stored threshold.
PREFIXED = metric_registry.names(per_prefix=True)


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` under ``prefix/``; characters MLflow refuses in metric names become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_\-. :/]", "_", prefix)
    return {f"{safe}/{k}": v for k, v in metrics.items() if k in PREFIXED}


def normalise_images(
    paths: Sequence[str], out_dir: Path, size: int | None, jpeg_quality: int | None
) -> list[str]:
    """Re-encode images at one size and JPEG quality, so a format difference cannot decide the score."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, path in enumerate(paths):
        img = load_rgb(path)
        if size:
            img = img.resize((size, size), resample=3)  # bicubic
        target = out_dir / (f"{i:07d}.jpg" if jpeg_quality else f"{i:07d}.png")
        if jpeg_quality:
            img.save(target, "JPEG", quality=int(jpeg_quality))
        else:
            img.save(target, "PNG")
        out.append(str(target))
    return out


def extra_set_metrics(
    extra_rows: Sequence[tuple[ExtraSet, pd.DataFrame]],
    predictor: Predictor,
    work_dir: Path,
    normalise: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Metrics on every extra data set (its labelled rows as read, ``data.job_inputs``), each under
    its own prefix.

    ``normalise`` (``eval.normalise_extra``: ``size``, ``jpeg_quality``) re-encodes the images first.
    """
    metrics: dict[str, float] = {}
    norm = normalise or {}
    for extra, table in extra_rows:
        paths = table["path"].tolist()
        if norm:
            paths = normalise_images(
                paths, work_dir / "extra" / extra.name, norm.get("size"), norm.get("jpeg_quality")
            )
        scores = np.asarray(predictor.predict_paths(paths), dtype=float)
        y = table["label"].to_numpy(dtype=int)
        m = compute_metrics(y, scores, predictor.threshold)
        metrics.update(prefixed(extra.name, m))
        log.info("eval.extra %s: roc_auc=%.4f on %d images", extra.name, m["roc_auc"], len(y))
    return metrics


def perturbation_metrics(
    perturbations: Sequence[str], test_rows: pd.DataFrame, predictor: Predictor, work_dir: Path
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics on the held-out test images after each named perturbation (``jpeg75``, ``blur1``, ...).

    Perturbed images are written once (JPEG re-compression as JPEG, the rest lossless as PNG) and
    scored through the predictor, so both tracks see the same pixels and their own preprocessing.
    """
    parsed = [parse_perturbation(name) for name in perturbations]  # fail fast on a bad name
    y = test_rows["label"].to_numpy(dtype=int)
    metrics: dict[str, float] = {}
    curve = []
    for pert in parsed:
        out_dir = work_dir / "perturbed" / pert.name
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [str(pert.save(load_rgb(p), out_dir / f"{i:07d}")) for i, p in enumerate(test_rows["path"])]
        scores = np.asarray(predictor.predict_paths(paths), dtype=float)
        m = compute_metrics(y, scores, predictor.threshold, warn=False)
        metrics.update(prefixed(pert.name, m))
        curve.append(
            {
                "perturbation": pert.name,
                "family": pert.family,
                "severity": pert.severity,
                "roc_auc": m["roc_auc"],
            }
        )
        log.info("perturbation %s: roc_auc=%.4f", pert.name, m["roc_auc"])
    return metrics, pd.DataFrame(curve)


def group_metrics(scores: pd.DataFrame, threshold: float) -> dict[str, float]:
    """Metrics per ``group`` on the test rows, when the data carries more than one group.

    A group of one class only (a generator's images) is scored together with the test rows that have
    no group (typically the real photos), so its ROC-AUC says how well that generator is told apart.
    """
    test = scores[(scores["split"] == "test") & scores["label"].isin((0, 1))]
    group = test["group"].fillna("").astype(str)
    names = sorted(set(group) - {""})
    if len(names) < 2:
        return {}
    out: dict[str, float] = {}
    for name in names:
        rows = test[group == name]
        if rows["label"].nunique() < 2:
            rows = pd.concat([rows, test[group == ""]])
        out.update(
            prefixed(f"group/{name}", compute_metrics(rows["label"], rows["score"], threshold, warn=False))
        )
    return out


def robustness_plot(curve: pd.DataFrame, clean_auc: float, path: Path) -> Path:
    """ROC-AUC against perturbation strength, one line per perturbation family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for family, rows in curve.groupby("family"):
        rows = rows.sort_values("severity")
        # every family starts from the clean score at severity 0
        ax.plot([0.0, *rows["severity"]], [clean_auc, *rows["roc_auc"]], marker="o", label=family)
        for _, r in rows.iterrows():
            ax.annotate(r["perturbation"], (r["severity"], r["roc_auc"]), fontsize=7)
    ax.axhline(clean_auc, color="grey", linestyle="--", label="clean")
    ax.set_xlabel("severity (JPEG: (100-q)/100, blur: sigma px, resize/crop: 1-fraction)")
    ax.set_ylabel("ROC-AUC")
    ax.set_ylim(0.0, 1.02)
    ax.legend()
    ax.set_title("Robustness to test-time perturbations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass
class BeyondHoldout:
    """What ``beyond_holdout`` found: metrics under their prefixes and the robustness files
    (``robustness.csv``, its plot) to log."""

    metrics: dict[str, float]
    files: list[Path]


def beyond_holdout(
    extra_rows: Sequence[tuple[ExtraSet, pd.DataFrame]],
    perturbations: Sequence[str],
    predictor: Predictor,
    test_rows: pd.DataFrame,
    clean_auc: float,
    work_dir: Path,
    normalise: Mapping[str, Any] | None = None,
) -> BeyondHoldout:
    """``eval.extra`` data sets (their rows as read) and ``eval.perturb`` perturbations, each under its
    own metric prefix; the robustness curve (``perturbations`` against ``clean_auc``) written under
    ``work_dir``."""
    found = BeyondHoldout({}, [])
    if extra_rows:
        found.metrics.update(extra_set_metrics(extra_rows, predictor, work_dir, normalise=normalise))
    if perturbations:
        perturbed, curve = perturbation_metrics(list(perturbations), test_rows, predictor, work_dir)
        found.metrics.update(perturbed)
        curve.to_csv(work_dir / "robustness.csv", index=False)
        plot = robustness_plot(curve, clean_auc, work_dir / "robustness.png")
        found.files += [work_dir / "robustness.csv", plot]
    return found
