"""The sweep report's cost-quality section: ROC-AUC against extraction speed, one point per encoder."""

from __future__ import annotations

import base64
import os
import statistics
from pathlib import Path

import pandas as pd
import pytest

from fid_bench.tracking.sweep_report import (
    COST_QUALITY,
    COST_QUALITY_POINTS,
    REPORT,
    auc_metric,
    log_sweep_report,
)

SPEED = "extract/images_per_s"
METRIC = "loso/worst_roc_auc"  # the sweep's optimised metric: an ROC-AUC, so the plot shows it


def _sweep(children: list[dict]) -> tuple[object, str]:
    """A finished parent run with the given finished children (``model``, ``track``, ``metrics``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.create_experiment("demo")
    parent = client.create_run(exp, tags={"fid_bench.kind": "parent"}, run_name="sweep").info.run_id
    for i, child in enumerate(children):
        tags = {
            "fid_bench.kind": "job",
            "mlflow.parentRunId": parent,
            "model": child["model"],
            "classifier": "logreg",
            "balance": "none",
            "data": "demo",
            "track": child.get("track", "features"),
        }
        run = client.create_run(exp, tags=tags, run_name=f"job-{i}").info.run_id
        for key, value in child["metrics"].items():
            client.log_metric(run, key, value)
        client.set_terminated(run, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return client, parent


def _job(model: str, speed: float | None, auc: float, **extra) -> dict:
    # roc_auc is logged too, different from the optimised metric: the plot must show the latter
    metrics = {METRIC: auc, "roc_auc": auc - 0.2}
    if speed is not None:
        metrics[SPEED] = speed
    return {"model": model, "metrics": metrics, **extra}


def _artifact(client, run_id: str, path: str, tmp: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(tmp)))


def _log(client, parent: str, tmp_path: Path) -> tuple[str, set[str]]:
    assert log_sweep_report(client.tracking_uri, parent, metric=METRIC) == REPORT
    page = _artifact(client, parent, REPORT, tmp_path).read_text()
    return page, {f.path for f in client.list_artifacts(parent)}


def test_the_report_draws_each_encoder_at_its_best_auc_and_its_timed_speed(tmp_path: Path) -> None:
    jobs = [
        _job("clip", 25.0, 0.91),
        _job("clip", 0.0, 0.95),  # every feature cached: takes clip's speed from the run above
        _job("dino", 9.0, 0.97),
        _job("dino", 11.0, 0.93),
        _job("spectrum", 0.0, 0.80),  # never timed: no point
        _job("resnet18", None, 0.99, track="finetune"),  # no extraction: left out, said so
    ]
    client, parent = _sweep(jobs)
    page, artifacts = _log(client, parent, tmp_path)

    assert {REPORT, COST_QUALITY, COST_QUALITY_POINTS} <= artifacts
    png = _artifact(client, parent, COST_QUALITY, tmp_path / "png").read_bytes()
    assert png.startswith(b"\x89PNG") and base64.b64encode(png).decode("ascii") in page  # the same figure
    assert "<h2>Cost and quality per encoder</h2>" in page and f"best {METRIC}" in page

    drawn = pd.read_csv(_artifact(client, parent, COST_QUALITY_POINTS, tmp_path / "csv")).set_index("encoder")
    timed = [j for j in jobs if j.get("track") != "finetune"]
    expected = {
        model: (
            statistics.median(
                j["metrics"][SPEED] for j in timed if j["model"] == model and j["metrics"][SPEED] > 0
            ),
            max(j["metrics"][METRIC] for j in timed if j["model"] == model),
        )
        for model in ("clip", "dino")
    }
    assert set(drawn.index) == set(expected)
    for model, (speed, auc) in expected.items():
        assert drawn.loc[model, "images_per_s"] == pytest.approx(speed)
        assert drawn.loc[model, METRIC] == pytest.approx(auc)
        assert f'<td>{model}</td><td class="num">{speed:.1f}</td><td class="num">{auc:.4f}</td>' in page
    assert "1 fine-tune run(s) left out" in page
    assert "never timed (every feature was cached): spectrum" in page


def test_no_timed_extraction_is_one_line_and_no_plot(tmp_path: Path) -> None:
    client, parent = _sweep(
        [_job("clip", 0.0, 0.9), _job("dino", None, 0.8), _job("resnet18", None, 0.95, track="finetune")]
    )
    page, artifacts = _log(client, parent, tmp_path)

    assert COST_QUALITY not in artifacts and COST_QUALITY_POINTS not in artifacts
    assert "Cost and quality per encoder" not in page
    (line,) = [ln for ln in page.splitlines() if "no feature extraction was timed" in ln]
    assert "1 fine-tune run(s) left out" in line and f"1 run(s) without {METRIC} or a logged {SPEED}" in line


def test_the_plot_shows_the_sweeps_metric_when_it_is_an_roc_auc() -> None:
    assert auc_metric("loso/worst_roc_auc") == "loso/worst_roc_auc"
    assert auc_metric("val_roc_auc") == "val_roc_auc"
    assert auc_metric("f1") == "roc_auc"
    assert auc_metric("roc_auc_ci_low") == "roc_auc"
