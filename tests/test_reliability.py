"""Adversarial inputs, signals and failures (docs/ADVERSARIAL.md, "Inputs, signals and failures"):
each case ends in one clear line or a counted skip, never a traceback or silent loss."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fid_bench.errors import PARTLY_FAILED_EXIT, FidBenchError
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
def test_missing_weights_in_a_multirun_stop_it_before_any_run(isolated: Path) -> None:
    proc = _fid_bench("-m", *TINY, "model=resnet50,vit_b16", cwd=isolated)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["model=resnet50", "model=vit_b16"], proc.stderr
    assert all(
        "fid-bench weights get" in ln and "model=efficientnet_lite0,dinov2_vits14" in ln for ln in lines
    )
    assert _runs() == [] and not (isolated / "multirun").exists()  # no job started, no run created


def test_a_failing_job_in_a_multirun_is_one_line_per_job(isolated: Path) -> None:
    proc = _fid_bench(
        "-m",
        *TINY,
        "model=resnet50",
        "model.pretrained=false",
        "model.name=no_such_net_a,no_such_net_b",
        cwd=isolated,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == PARTLY_FAILED_EXIT, out[
        -3000:
    ]  # the sweep ends normally, saying its jobs failed
    assert "Traceback" not in out and "InstantiationException" not in out
    failed = [ln for ln in out.splitlines() if "job failed:" in ln]
    assert len(failed) == 2, out[-3000:]
    assert "no_such_net_a" in failed[0] and "no_such_net_b" in failed[1]
    runs = [r for r in _runs() if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]
    # the run's error tag is the cause, not Hydra's wrapper
    assert all(r.data.tags["error"].startswith("FidBenchError: ") for r in runs)


def test_unreachable_hub_is_asked_once_without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from fid_bench.backbones import weights as W

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


# ----------------------------------------------------------------------------- 6. SIGTERM and Ctrl-C
def _interrupt_during_extraction(isolated: Path, signum: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Start a job whose extraction is slow, send ``signum`` once the run is RUNNING and at least one
    batch has been encoded, and wait for the process to end."""
    marker = isolated / "encoded.txt"
    args = [
        *TINY,
        "features.batch_size=8",
        "model.backbone._target_=tests.signal_support.SlowSpectrumEncoder",
        "tracking.log_model=false",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fid_bench", *args],
        cwd=isolated,
        env=_env(FID_BENCH_TEST_ENCODED=str(marker)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from an interactive shell: a job started in the background by a non-interactive shell
        # inherits SIGINT ignored, and the harness rightly keeps an ignored signal ignored
        preexec_fn=_default_signals,
    )
    try:
        deadline = time.monotonic() + 120
        # two batches encoded: at least one is done and waits in memory for the cache
        while not (_batches(marker) >= 2 and [r for r in _runs() if r.info.status == "RUNNING"]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "extraction never started"
            time.sleep(0.1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), marker


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _batches(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def _cached_rows(cache_dir: Path) -> int:
    from fid_bench.features.extract import feature_cache
    from tests.signal_support import SlowSpectrumEncoder

    encoder = SlowSpectrumEncoder(image_size=None, max_tiles=9, radial_bins=12)
    encoder.prepare("cpu")
    return len(feature_cache(encoder, cache_dir))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_extraction_flushes_cache_and_marks_run_killed(isolated: Path, signum: int) -> None:
    proc, marker = _interrupt_during_extraction(isolated, signum)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: interrupted by {name}"), proc.stderr[-3000:]
    (run,) = _runs()
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == f"Interrupted: {name}"
    # every batch encoded before the signal reached the cache (flushed, not lost)
    encoded = sum(int(n) for n in marker.read_text().split())
    cached = _cached_rows(isolated / "cache")
    assert cached > 0 and cached >= encoded - 8  # at most the batch being encoded is lost


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_the_group_during_fine_tuning_stops_workers_quietly(isolated: Path, signum: int) -> None:
    """Ctrl-C in a terminal and ``timeout``/SLURM signal the whole process group, DataLoader workers
    included: the job still ends with its one line (no worker tracebacks) and a KILLED run."""
    args = [
        *TINY, "model=small_cnn", "trainer.max_epochs=500", "trainer.num_workers=2",
        "tracking.log_model=false", "eval.bootstrap=0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "fid_bench", *args], cwd=isolated, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_signals,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        # training is under way: an epoch has been logged, the workers are up
        while not [r for r in _runs() if r.info.status == "RUNNING" and "train_loss" in r.data.metrics]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=120)  # a hang guard; measured: 8 s on a busy 2-core CPU
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "DataLoader worker" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"error: interrupted by {name}")
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    (run,) = _runs()
    assert run.info.status == "KILLED"


_LEFT_WORKERS = """
import sys
import torch
from torch.utils.data import DataLoader
from fid_bench import signals
from fid_bench.finetune.threads import init_loader_worker

signals.install()
loader = DataLoader(torch.arange(64), batch_size=4, num_workers=2, worker_init_fn=init_loader_worker)
left = iter(loader)  # an iterator an error left unfinished: its workers are still alive at exit
next(left)
sys.exit(3)
"""


def test_workers_left_alive_at_exit_are_stopped_without_hang_or_traceback(isolated: Path) -> None:
    """Quiet workers leave their first SIGTERM to the main process, which is what multiprocessing
    sends them at exit: without the exit hook the process waits for them forever."""
    proc = subprocess.run(
        [sys.executable, "-c", _LEFT_WORKERS], cwd=REPO, env=_env(), capture_output=True, text=True,
        timeout=60, preexec_fn=_default_signals,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- 8. smaller holes
def _png(path: Path, value: int = 128, size: int = 16, fmt: str = "PNG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value // 2, 255 - value)).save(path, fmt)
    return path


def _kaggle(root: Path, train: list[tuple[str, object]]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["id,target", *(f"{i},{t}" for i, t in train)]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def _reasons(samples) -> dict[str, str]:
    return dict(zip(samples.skipped["id"], samples.skipped["reason"], strict=True))


def test_kaggle_id_without_extension_finds_an_avif_file(tmp_path: Path) -> None:
    from fid_bench.data.readers import KaggleReader

    root = _kaggle(tmp_path / "k", [("a", 1), ("b", 0)])
    _png(root / "images" / "a.avif", 200, fmt="AVIF")
    _png(root / "images" / "b.png", 10)
    samples = KaggleReader(root).read()
    assert len(samples.skipped) == 0
    assert samples.table.set_index("id").loc["a", "path"].endswith("a.avif")


def test_duplicate_id_with_another_label_is_reported_as_conflicting(tmp_path: Path) -> None:
    from fid_bench.data.readers import KaggleReader

    root = _kaggle(tmp_path / "k", [("a", 1), ("a", 1), ("a", 0), ("b", 0)])
    for name in ("a", "b"):
        _png(root / "images" / f"{name}.png")
    samples = KaggleReader(root).read()
    assert samples.table[["id", "label"]].values.tolist() == [["a", 1], ["b", 0]]  # the first row kept
    assert sorted(samples.skipped["reason"]) == ["conflicting_labels", "duplicate_id"]
    _kaggle(root, [("a", 1), ("b", 0), ("a", 0)])
    with pytest.raises(FidBenchError, match="conflicting_labels: train.csv line 4: id 'a' has target 0"):
        KaggleReader(root, strict=True).read()


def test_one_skipped_rows_line_per_run(compose_cfg, isolated: Path, caplog) -> None:
    import logging

    from fid_bench.jobs.experiment import run_job
    from tests.test_end_to_end import _kaggle_folder

    root = _kaggle_folder(isolated / "kaggle")
    caplog.set_level(logging.INFO)
    overrides = ["data=kaggle", f"data.root={root}", "features.num_workers=0", "tracking.log_model=false"]
    run_job(compose_cfg(*overrides, tiny=False))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    # reader, run and audit each used to say it; now the run does, once, naming its artifact
    lines = [m for m in said if re.search(r"skipped( or unreadable:)? \d+", m)]
    assert len(lines) == 1 and lines[0].startswith("skipped 2 rows (1 "), lines
    assert "truncated" in lines[0] and "empty_file" in lines[0] and "skipped.csv" in lines[0]


def test_leaderboard_lists_failed_runs_of_a_store_without_finished_ones(isolated: Path, capsys) -> None:
    import mlflow

    from fid_bench.commands import leaderboard_command as leaderboard

    client = mlflow.MlflowClient()
    exp = client.create_experiment("demo")
    for _ in range(2):
        run = client.create_run(exp, tags={"fid_bench.kind": "job", "model": "resnet50"})
        client.set_terminated(run.info.run_id, "FAILED")
    assert leaderboard.main(["--status", "FAILED", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.count("FAILED") == 2 and "resnet50" in out
    # with finished runs present, a metric nobody logged is still a typo worth an error
    assert leaderboard.main(["--metric", "roc_acu"]) == 2


def test_predict_with_an_empty_run_id_says_so(isolated: Path, capsys) -> None:
    from fid_bench.commands.predict_command import main

    images = _png(isolated / "imgs" / "a.png").parent
    assert main(["--run", "", "--images", str(images), "--out", str(isolated / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run is empty" in err[0], err


def test_external_pickle_that_is_not_a_predictor_ends_in_one_line(isolated: Path, capsys) -> None:
    import pickle

    import mlflow
    from sklearn.dummy import DummyClassifier

    from fid_bench.commands.predict_command import main
    from fid_bench.tracking.pyfunc import _MODEL_CODE, PREDICTOR_ARTIFACT

    images = _png(isolated / "imgs" / "a.png").parent
    outside = isolated / "elsewhere"
    outside.mkdir()
    # an MLflow model of another flavour, and a fid_bench wrapper around a pickle of something else
    mlflow.sklearn.save_model(DummyClassifier().fit([[0], [1]], [0, 1]), str(outside / "sk"))
    (outside / "not_a_predictor.pkl").write_bytes(pickle.dumps({"threshold": 0.5}))
    (outside / "code.py").write_text(_MODEL_CODE)
    mlflow.pyfunc.save_model(
        str(outside / "wrapped"),
        python_model=str(outside / "code.py"),
        artifacts={PREDICTOR_ARTIFACT: str(outside / "not_a_predictor.pkl")},
    )
    capsys.readouterr()
    for model in ("sk", "wrapped"):
        argv = ["--model-uri", str(outside / model), "--allow-external", "--no-progress"]
        assert main([*argv, "--images", str(images), "--out", str(isolated / "p.csv")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a fid_bench model" in err[0], err
        assert not (isolated / "p.csv").exists()


# ----------------------------------------------------------------------------- 7. symbolic links
def test_class_folder_linked_outside_the_root_is_read_but_links_below_it_stay_inside(tmp_path: Path) -> None:
    from fid_bench.data.readers import FolderReader

    elsewhere = tmp_path / "other_disk" / "real_images"
    _png(elsewhere / "a.png", 10)
    (elsewhere / "b.png").symlink_to("a.png")  # a link inside the linked class folder: allowed
    secret = _png(tmp_path / "secret" / "x.png", 99)
    root = tmp_path / "data"
    root.mkdir()
    (root / "real").symlink_to(elsewhere, target_is_directory=True)
    _png(root / "fake" / "c.png", 200)
    (root / "fake" / "evil.png").symlink_to(secret)  # leads outside root and class folder
    samples = FolderReader(root).read()
    assert sorted(samples.table["id"]) == ["fake/c.png", "real/a.png", "real/b.png"]
    assert _reasons(samples) == {"fake/evil.png": "outside_root"}


def test_kaggle_images_folder_may_be_a_link_to_another_disk(tmp_path: Path) -> None:
    from fid_bench.data.readers import KaggleReader

    disk = tmp_path / "disk2" / "images"
    for name, value in (("a", 10), ("b", 200)):
        _png(disk / f"{name}.png", value)
    secret = _png(tmp_path / "secret" / "x.png", 99)
    (disk / "c.png").symlink_to(secret)  # a file link below images/ leading elsewhere: refused
    root = tmp_path / "data"
    root.mkdir()
    (root / "images").symlink_to(disk, target_is_directory=True)
    (root / "train.csv").write_text("id,target\na,0\nb,1\nc,1\n")
    samples = KaggleReader(root).read()
    assert sorted(samples.table["id"]) == ["a", "b"]
    assert _reasons(samples) == {"c": "outside_root"}
    with pytest.raises(FidBenchError, match="outside_root"):
        KaggleReader(root, strict=True).read()


def test_predict_images_follow_the_same_link_rule(tmp_path: Path) -> None:
    from fid_bench.data.inputs import images_under

    real = tmp_path / "real_dir"
    _png(real / "a.png")
    (real / "b.png").symlink_to("a.png")
    (real / "leak.png").symlink_to(_png(tmp_path / "secret" / "x.png"))
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)  # DIR itself may be a link
    inputs = images_under(tmp_path / "linked")
    assert inputs.ids == ["a.png", "b.png", "leak.png"]  # never dropped: listed, scored with the prior
    assert list(inputs.unreadable) == [2] and inputs.unreadable[2].startswith("outside_root:")


# ----------------------------------------------------------------------------- 9. pixel limit
def _huge_png(path: Path, size: tuple[int, int] = (8000, 6000)) -> Path:
    """48 million pixels (above the default limit, below Pillow's own) in a few kilobytes."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", size).save(path, optimize=True)
    return path


def test_huge_image_is_too_large_before_decoding_on_every_path(
    compose_cfg, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fid_bench.data import decode
    from fid_bench.data.readers import KaggleReader
    from fid_bench.data.validation import validate_files
    from fid_bench.jobs.experiment import load_samples

    monkeypatch.setenv(decode.MAX_PIXELS_ENV, "")  # restored after the test, whatever sets it
    root = _kaggle(isolated / "k", [("bomb", 1), ("ok", 0)])
    bomb = _huge_png(root / "images" / "bomb.png")
    _png(root / "images" / "ok.png")
    assert bomb.stat().st_size < 100_000
    # readers (validation), and load_rgb: what extraction, fine-tuning and predict decode with
    assert _reasons(KaggleReader(root).read()) == {"bomb": "too_large"}
    with pytest.raises(decode.ImageDecodeError, match=r"8000x6000 = 48000000 pixels, above data.max_pixels"):
        decode.load_rgb(bomb)

    # configurable, and a cached "ok" under a higher limit does not survive a lower one
    small = _png(isolated / "small.png", size=100)
    decode.set_max_pixels(20_000)
    assert validate_files([str(small)], cache_dir=isolated / "c")[0].ok
    cfg = compose_cfg("data=kaggle", f"data.root={root}", "data.max_pixels=100", tiny=False)
    samples = load_samples(cfg)
    assert len(samples.table) == 0 and set(samples.skipped["reason"]) == {"too_large"}
    assert validate_files([str(small)], cache_dir=isolated / "c")[0].reason == "too_large"
    with pytest.raises(FidBenchError, match="data.max_pixels must be a positive number"):
        decode.set_max_pixels(0)


@pytest.mark.parametrize("overrides", [["experiment=cifake"], ["data=folder", "model=spectrum"]])
def test_an_unset_mandatory_value_is_one_line_before_any_run(isolated: Path, overrides: list[str]) -> None:
    """``data.root: ???`` left unset: one line naming it (OmegaConf would fail on the interpolation
    that reads it, ``data.reader.root``, with a traceback) and no MLflow run."""
    proc = _fid_bench(*overrides, cwd=isolated)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert (
        lines[0] == "error: data.root must be set on the command line, e.g. data.root=... (it has no default)"
    )
    assert _runs() == []


def test_unset_values_are_found_without_resolving_interpolations() -> None:
    from omegaconf import OmegaConf

    from fid_bench.config import unset_values

    cfg = OmegaConf.create(
        {"a": "???", "b": {"c": "${a}", "d": ["x", "???", {"e": "???"}]}, "f": "${b.c}", "g": 1}
    )
    assert unset_values(cfg) == ["a", "b.d[1]", "b.d[2].e"]
