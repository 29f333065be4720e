"""A built wheel carries everything a run needs: it works outside the checkout, from any directory.

The wheel is built from a copy of the package, ``pyproject.toml`` and ``README.md`` only, so a file
the package reads from the checkout (a config, a template) would be missing and the run would fail.
Third-party packages come from the test's own environment (``--no-deps``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fid_bench`` installed from a freshly built wheel into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO / "fid_bench", src / "fid_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"), str(src), cwd=work)
    (wheel,) = (work / "dist").glob("fid_bench-*.whl")
    _pip("install", "--no-deps", "--target", str(work / "site"), str(wheel), cwd=work)
    return work / "site"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts the installed copy ahead of the checkout (an editable install's finder comes last)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_wheel_ships_the_config(installed: Path) -> None:
    conf = installed / "fid_bench" / "conf"
    shipped = {p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")}
    in_checkout = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == in_checkout


def test_installed_package_composes_from_another_directory(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(
        installed, elsewhere, "-m", "fid_bench", "--cfg", "job", "model=small_cnn", "classifier=finetune"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fid_bench.finetune.detector.FinetuneDetector" in done.stdout
    # the app's config came from the installed copy, not from the checkout
    where = _run(installed, elsewhere, "-c", "import fid_bench.config as c; print(c.conf_dir())")
    assert Path(where.stdout.strip()) == installed / "fid_bench" / "conf"


def test_installed_package_runs_demo_leaderboard_and_predict(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    job = _run(installed, elsewhere, "-m", "fid_bench", *TINY, f"tracking.uri={store}", "eval.bootstrap=0")
    assert job.returncode == 0, job.stderr[-2000:]
    env_uri = ("--tracking-uri", store)
    board = _run(installed, elsewhere, "-m", "fid_bench.cli", "leaderboard", "--experiment", "demo", *env_uri)
    assert board.returncode == 0, board.stderr[-2000:]
    assert "spectrum" in board.stdout
    out = elsewhere / "predictions.csv"
    images = tmp_path / "cache" / "demo_data"
    pred = _run(
        installed,
        tmp_path,  # yet another working directory than the one the run was trained in
        "-m",
        "fid_bench.cli",
        "predict",
        "--run",
        "best",
        "--experiment",
        "demo",
        *env_uri,
        "--images",
        str(images),
        "--out",
        str(out),
    )
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert out.is_file() and len(out.read_text().splitlines()) > 1
