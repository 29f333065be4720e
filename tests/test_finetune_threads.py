"""``trainer.threads``: the config key, its one-line errors, the auto choice, and a fine-tuning job
that trains with the chosen torch threads and gives torch its own setting back afterwards."""

from __future__ import annotations

import logging

import pytest
import torch

from fid_bench.errors import FidBenchError, user_error
from fid_bench.finetune import threads as threads_mod
from fid_bench.finetune.threads import auto_threads, check_threads, torch_threads
from tests.test_finetune import detector, make_fold, make_images, make_job


@pytest.fixture
def torch_threads_kept():
    """Whatever a test does to torch's threads, the next test starts from the same setting."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


# -- the config key ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cpu", "gpu", "ddp"])
def test_every_trainer_config_has_threads_auto_by_default(compose_cfg, name):
    from hydra.utils import instantiate

    cfg = compose_cfg("model=small_cnn", f"trainer={name}")
    assert "threads" in cfg.trainer and cfg.trainer.threads is None
    assert instantiate(cfg.classifier)._hardware()["threads"] is None


def test_an_integer_reaches_the_detector_and_not_the_lightning_trainer(compose_cfg, tmp_path):
    from hydra.utils import instantiate

    det = instantiate(compose_cfg("model=small_cnn", "trainer.threads=3").classifier)
    hw = det._hardware()
    assert hw["threads"] == 3 and "threads" not in hw["trainer_kwargs"]


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "true"])
def test_a_bad_value_is_one_line_naming_the_key(compose_cfg, value):
    from hydra.utils import instantiate

    cfg = compose_cfg("model=small_cnn", f"trainer.threads={value}")
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra wraps the constructor's error
        instantiate(cfg.classifier)
    err = user_error(info.value)
    assert isinstance(err, FidBenchError), info.value
    message = str(err)
    assert message.startswith("trainer.threads must be null (auto) or an integer >= 1, got ")
    assert "\n" not in message


def test_check_threads_accepts_null_auto_and_positive_integers():
    assert check_threads(None) is None and check_threads("auto") is None
    assert check_threads(1) == 1 and check_threads(7) == 7
    for bad in (0, -2, 2.0, "2", True, [2]):
        with pytest.raises(FidBenchError, match="trainer.threads"):
            check_threads(bad)


# -- the auto choice (a pure function of the counts) ------------------------------------------------
@pytest.mark.parametrize(
    ("cpus", "workers", "kwargs", "expected"),
    [
        (2, 2, {}, 1),  # 2 cores, 2 loader workers: one thread left for training, not 0
        (2, 0, {}, 2),  # no workers: the main process has every core
        (8, 2, {}, 6),
        (8, 2, {"current": 4}, 4),  # never above torch's own setting (e.g. OMP_NUM_THREADS)
        (8, 2, {"current": 1}, 1),
        (8, 2, {"processes": 2}, 2),  # two DDP ranks share the node: 4 CPUs each, minus 2 workers
        (8, 1, {"processes": 16}, 1),
        (1, 4, {}, 1),
        (16, 8, {"on_cpu": False, "current": 32}, 16),  # GPU: the workers do not count, the cap does
        (16, 8, {"on_cpu": False, "current": 8}, 8),  # GPU: torch's setting left alone
        (16, 8, {"on_cpu": False, "processes": 4, "current": 8}, 4),
    ],
)
def test_auto_threads(cpus, workers, kwargs, expected):
    assert auto_threads(cpus, workers, **kwargs) == expected


def test_resolve_uses_the_available_cpus_and_torchs_setting(monkeypatch, torch_threads_kept):
    monkeypatch.setattr(threads_mod, "available_cpus", lambda: 6)
    torch.set_num_threads(3)
    assert threads_mod.resolve_threads(None, workers=1) == 3  # capped by torch's 3
    assert threads_mod.resolve_threads(None, workers=4) == 2
    assert threads_mod.resolve_threads(5, workers=4) == 5  # an explicit value is used as given


def test_available_cpus_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert threads_mod.available_cpus() == 3


# -- applying and restoring ---------------------------------------------------------------------------
def test_torch_threads_restores_after_an_error(torch_threads_kept):
    before = torch_threads_kept
    with pytest.raises(RuntimeError, match="boom"), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_a_refused_interop_setting_is_not_an_error(monkeypatch, torch_threads_kept):
    calls = []

    def refuse(n):
        calls.append(n)
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 8)
    monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert calls == [1]  # it was tried, and refused quietly


def test_the_loaders_workers_run_one_torch_thread(tmp_path):
    from fid_bench.finetune.datamodule import FinetuneDataModule
    from fid_bench.finetune.threads import init_loader_worker
    from tests.test_finetune import Balance

    table = make_images(tmp_path / "img", 12)
    dm = FinetuneDataModule(
        table, make_fold(12, 3, 3), image_size=16, balance=Balance(), num_workers=1, decoded_cache="off"
    )
    loaders = [dm.train_dataloader(), dm.val_dataloader(), dm.eval_dataloader(dm.fold.test)]
    assert all(loader.worker_init_fn is init_loader_worker for loader in loaders)


# -- a tiny fine-tuning job ------------------------------------------------------------------------
def _record_training_threads(monkeypatch, *, fail: bool = False) -> list[int]:
    """torch.get_num_threads() as seen by every training step of the job."""
    from fid_bench.finetune import module as finetune_module

    seen: list[int] = []
    original = finetune_module.FinetuneModule.training_step

    def training_step(self, batch, batch_idx):
        seen.append(torch.get_num_threads())
        if fail:
            raise RuntimeError("training broke")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(finetune_module.FinetuneModule, "training_step", training_step)
    return seen


def test_a_job_trains_with_the_given_threads_and_restores_torchs(
    tmp_path, monkeypatch, torch_threads_kept, caplog
):
    before = torch_threads_kept
    wanted = before + 1  # differs from torch's setting, so applying it is what the steps see
    seen = _record_training_threads(monkeypatch)
    table = make_images(tmp_path / "img", 24)
    det = detector(max_epochs=2, trainer={"threads": wanted})
    with caplog.at_level(logging.INFO, logger="fid_bench.finetune.detector"):
        det.fit_predict(make_job(table, tmp_path), make_fold(24, 6, 6))
    assert seen and set(seen) == {wanted}
    assert torch.get_num_threads() == before
    assert det.extra_metrics()["torch_threads"] == wanted
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("torch threads:")]
    assert lines == [f"torch threads: {wanted} (trainer.threads={wanted})"]


def test_auto_in_a_job_leaves_a_core_per_loader_worker(tmp_path, monkeypatch, torch_threads_kept):
    monkeypatch.setattr(threads_mod, "available_cpus", lambda: 3)
    torch.set_num_threads(4)  # torch's own setting above what auto chooses: 3 CPUs - 1 worker = 2
    seen = _record_training_threads(monkeypatch)
    table = make_images(tmp_path / "img", 24)
    det = detector(max_epochs=1, trainer={"threads": None, "num_workers": 1})
    det.fit_predict(make_job(table, tmp_path), make_fold(24, 6, 6))
    assert seen and set(seen) == {2}
    assert det.extra_metrics()["torch_threads"] == 2
    assert torch.get_num_threads() == 4


def test_a_failed_job_restores_torchs_threads(tmp_path, monkeypatch, torch_threads_kept):
    before = torch_threads_kept
    seen = _record_training_threads(monkeypatch, fail=True)
    table = make_images(tmp_path / "img", 16)
    with pytest.raises(RuntimeError, match="training broke"):
        detector(max_epochs=1, trainer={"threads": before + 2}).fit_predict(
            make_job(table, tmp_path), make_fold(16, 4, 4)
        )
    assert seen == [before + 2] and torch.get_num_threads() == before


def test_run_job_logs_the_resolved_threads_to_mlflow(compose_cfg, torch_threads_kept):
    import mlflow

    from fid_bench.jobs.experiment import run_job

    wanted = torch_threads_kept + 1
    cfg = compose_cfg(
        "model=small_cnn",
        "data.image_size=16",
        "model.backbone.widths=[4,8]",
        "trainer.max_epochs=1",
        "trainer.num_workers=0",
        f"trainer.threads={wanted}",
        "tracking.log_model=false",
    )
    run_job(cfg)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.metrics["torch_threads"] == wanted
    assert run.data.params["trainer.threads"] == str(wanted)
    assert torch.get_num_threads() == torch_threads_kept


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path

import torch

from fid_bench.finetune import module as finetune_module
from tests.test_finetune import detector, make_fold, make_images, make_job

seen = []
original = finetune_module.FinetuneModule.training_step


def training_step(self, batch, batch_idx):
    seen.append(torch.get_num_threads())
    return original(self, batch, batch_idx)


finetune_module.FinetuneModule.training_step = training_step
out, wanted = Path(sys.argv[1]), int(sys.argv[2])
det = detector(max_epochs=1, trainer={"strategy": "ddp", "devices": 1, "threads": wanted, "progress_bar": False})
before = torch.get_num_threads()
det.fit_predict(make_job(make_images(out / "img", 16), out), make_fold(16, 4, 4))
print(json.dumps({"before": before, "seen": sorted(set(seen)), "after": torch.get_num_threads()}))
"""


def test_the_setting_survives_lightnings_ddp_launcher(tmp_path):
    """Lightning's DDP launcher sets torch's threads itself (CPUs / processes) inside ``fit``, when
    OMP_NUM_THREADS is unset: the job's setting must still be what training runs with."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    wanted = threads_mod.available_cpus() + 1  # never what the launcher would choose
    done = subprocess.run(
        [sys.executable, "-c", DDP_SCRIPT, str(tmp_path), str(wanted)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["seen"] == [wanted]
    assert result["after"] == result["before"]
