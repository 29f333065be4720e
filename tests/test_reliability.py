"""Adversarial inputs, signals and failures (docs/ADVERSARIAL.md, "Inputs, signals and failures"):
each case ends in one clear line or a counted skip, never a traceback or silent loss."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fid_bench.errors import FidBenchError
from tests.conftest import REPO, TINY


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def _fid_bench(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fid_bench", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runs():
    import mlflow

    client = mlflow.MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000) if ids else []


# ----------------------------------------------------------------------------- 5. tracking server down
def test_unreachable_tracking_server_fails_at_once_with_one_line(isolated: Path) -> None:
    # before the probe, MLflow retried this for about 4 minutes: the timeout fails the old code
    proc = _fid_bench(*TINY, cwd=isolated, timeout=120, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: cannot reach tracking server http://127.0.0.1:9: ConnectionError"], proc.stderr
    assert not (isolated / "cache" / "demo_data").exists()  # stopped before reading any data


# ----------------------------------------------------------------------------- 10. errors wrapped by Hydra
def test_missing_weights_in_a_multirun_is_one_line_per_job(isolated: Path) -> None:
    proc = _fid_bench("-m", *TINY, "model=resnet50,vit_b16", cwd=isolated)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]  # the sweep itself ends normally, its jobs failed
    assert "Traceback" not in out and "InstantiationException" not in out
    failed = [ln for ln in out.splitlines() if "job failed:" in ln]
    assert len(failed) == 2, out[-3000:]
    assert "pretrained weights for resnet50 " in failed[0]
    assert "pretrained weights for vit_base_patch16_224 " in failed[1]
    runs = [r for r in _runs() if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]
    # the run's error tag is the cause, not Hydra's wrapper
    assert all(r.data.tags["error"].startswith("FidBenchError: pretrained weights") for r in runs)


def test_unreachable_hub_is_asked_once_without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from fid_bench.features import weights as W

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(W, "_HUB_PROBES", {})
    downloads = []
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda *a, **k: downloads.append(a))
    for _ in range(2):  # a second model in the same sweep does not ask again
        with pytest.raises(FidBenchError) as info:
            W.hub_file("timm/resnet50.a1_in1k", ["model.safetensors", "pytorch_model.bin"], model="resnet50")
        assert "http://127.0.0.1:9 unreachable" in str(info.value) and "\n" not in str(info.value)
    assert downloads == []  # the retrying download was never started
    assert list(W._HUB_PROBES) == ["http://127.0.0.1:9"]
