"""The path from a sweep to a promoted model, as a person sees it in the MLflow UI (headless Chromium).

A real tiny sweep and a tiny Optuna search (whose refit is promoted to ``fid-detector@champion``)
fill a store; a real ``mlflow server`` on 127.0.0.1 serves it; Debian's chromium, driven through
its own chromedriver (selenium never downloads a browser here), opens the link ``make ui`` prints
and checks what a person would look for. Screenshots go to ``tmp_path/screenshots`` and are copied
to ``test-artifacts/ui/`` (ignored by git) for CI to keep.

Slow (about a minute and a half, most of it the server's start-up), so outside ``make test``;
``make test-browser`` runs it, and CI calls that after ``make install-browser``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("FID_BENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FID_BENCH_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = REPO / "test-artifacts" / "ui"
MODEL_NAME = "fid-detector"
#: generous: the UI and the server share two busy cores with the sweep
WAIT_S = 120
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1680,900",
    # the page may only talk to our own server: every other host name fails to resolve
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def _missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} not installed (make install-browser)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONWARNINGS": "ignore"})
    return env


@pytest.fixture
def server(isolated: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` over this test's store; started first, as it is the slowest to come up."""
    store = isolated / "mlruns" / "mlflow.db"
    port = free_port()
    log_path = isolated / "mlflow-server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
             "--default-artifact-root", str(isolated / "mlruns" / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log_file, stderr=subprocess.STDOUT, env=quiet_env(), start_new_session=True,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(base: str, log_path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server at {base} did not come up:\n{log_path.read_text()[-2000:]}")


def run_fid_bench(*overrides: str, multirun: bool = False) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fid_bench", *(["-m"] if multirun else []), *TINY, *overrides],
        capture_output=True, text=True, env=quiet_env(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if _missing_browser() is not None:
        pytest.fail(str(_missing_browser()))
    if not REQUIRED:
        pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_DOWNLOADS"] = "true"  # never let selenium-manager fetch a browser or driver
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """What the test reads off the browser: visible text, and screenshots kept as artifacts."""

    def __init__(self, driver: object, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def wait_for(self, *needles: str) -> str:
        """The page text once it holds every needle (fails naming the missing ones)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, WAIT_S, poll_frequency=0.5).until(
                lambda d: all(n in self.text() for n in needles)
            )
        except TimeoutException:
            self.shot("failure")
            missing = [n for n in needles if n not in self.text()]
            pytest.fail(
                f"{self.driver.current_url}: never showed {missing}; page text:\n{self.text()[:3000]}"
            )
        time.sleep(1.0)  # let late cells render before the screenshot
        return self.text()

    def shot(self, name: str) -> Path:
        """Save a screenshot under tmp_path, and a copy for CI to keep (failures included)."""
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, ARTIFACTS / path.name)
        return path

    def click_text(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        element = self.driver.find_element(By.XPATH, f"//*[normalize-space(text())='{text}']")
        self.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element
        )


#: `make test-browser` (CI) sets it: a missing browser is then a failure, not a skip
REQUIRED = os.environ.get("FID_BENCH_REQUIRE_BROWSER") == "1"


@pytest.mark.skipif(not REQUIRED and _missing_browser() is not None, reason=str(_missing_browser()))
def test_a_person_picks_the_best_run_and_finds_the_champion(isolated, server, browser, tmp_path):
    import mlflow

    from fid_bench.tracking.lineage import CONTEXT_TAG
    from fid_bench.tracking.ui import model_url, run_url, runs_url

    base, server_log = server
    run_fid_bench("classifier=logreg,rf", multirun=True)
    run_fid_bench(
        "hparams_search=logreg", "hparams_search.n_trials=2", f"hparams_search.promote={MODEL_NAME}"
    )

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("demo")
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("fid_bench.kind") == "job"]
    assert len(jobs) == 3, [r.info.run_name for r in runs]  # two sweep jobs and the refit
    best = max(jobs, key=lambda r: r.data.metrics["roc_auc"])
    sweep_parent = next(r for r in runs if r.data.tags.get("fid_bench.kind") == "parent")
    train_digest = next(
        i.dataset.digest
        for i in best.inputs.dataset_inputs
        if {t.key: t.value for t in i.tags}[CONTEXT_TAG] == "train"
    )
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")

    wait_healthy(base, server_log)
    page = Page(browser, base, tmp_path / "screenshots")
    # the assistant panel opens by itself on a first visit to a local server and would hide the
    # table in the screenshots; everything else is the state a first visit gets
    page.open(base)
    browser.execute_script(
        "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
    )

    # 1. the link `make ui` prints: runs table, children listed flat, best first, headline metrics as columns
    # (wide enough for every column: the table renders only the columns in view)
    browser.set_window_size(2560, 900)
    page.open(runs_url(base, experiment.experiment_id))
    names = [r.info.run_name for r in jobs]
    text = page.wait_for(*names, "roc_auc", "f1", f"demo ({train_digest})")
    assert "Traces 0" not in text and "No data available" not in text  # not the GenAI overview
    # jobs only: the study's trials and the parents are filtered out (the search box says how)
    assert "trial-0" not in text and "trial-1" not in text and sweep_parent.info.run_name not in text
    # the best run is the first row
    assert text.index(best.info.run_name) == min(text.index(n) for n in names)
    page.shot("1-runs-table")
    headers = [
        h.text.strip()
        for h in browser.find_elements("css selector", "[role='columnheader']")
        if h.text.strip()
    ]
    assert {"roc_auc", "f1", "Dataset", "Source", "Models", "model", "classifier", "top"} <= set(headers), (
        headers
    )
    assert "python -m fid_bench" in text  # the Source column
    assert MODEL_NAME in text  # the Models column links the promoted version

    browser.set_window_size(1680, 900)

    # 2. the best run's page: its ROC figure among the artifacts
    page.open(run_url(base, experiment.experiment_id, best.info.run_id))
    page.wait_for("plots", "predictions.csv", "config.yaml")
    page.click_text("plots")
    page.wait_for("roc.png", "pr.png", "confusion.png")
    page.click_text("roc.png")
    page.wait_for("plots/roc.png")
    page.shot("2-best-run-roc")

    # 3. the sweep's parent run: the comparison figure of its best children
    page.open(run_url(base, experiment.experiment_id, sweep_parent.info.run_id))
    page.wait_for("comparison")
    page.click_text("comparison")
    page.wait_for("compare_top5.png")
    page.click_text("compare_top5.png")
    page.wait_for("comparison/compare_top5.png")
    page.shot("3-sweep-comparison")

    # 3b. the sweep's report.html, in MLflow's artifact viewer (an HTML file shows in a frame)
    page.click_text("report.html")
    page.wait_for("report.html")
    frames = browser.find_elements("css selector", "iframe")
    assert frames, "report.html is not shown in a frame"
    browser.switch_to.frame(frames[0])
    try:
        deadline = time.monotonic() + 60
        while "Leaderboard" not in browser.find_element("tag name", "body").text:
            assert time.monotonic() < deadline, "report.html never rendered"
            time.sleep(0.5)
        report = browser.find_element("tag name", "body").text
        swept = [r for r in jobs if r.data.tags.get("mlflow.parentRunId") == sweep_parent.info.run_id]
        assert all(r.info.run_id[:8] in report for r in swept) and "ROC and precision-recall curves" in report
        assert len(browser.find_elements("css selector", "img")) >= 2
    finally:
        browser.switch_to.default_content()
    page.shot("3b-sweep-report")

    # 4. the registered model: the champion alias on the promoted version
    page.open(model_url(base, MODEL_NAME))
    text = page.wait_for(MODEL_NAME, "champion", f"Version {champion.version}")
    page.shot("4-registered-model")

    assert sorted(p.name for p in page.shots.glob("[1-4]*-*.png")) == [
        "1-runs-table.png", "2-best-run-roc.png", "3-sweep-comparison.png", "3b-sweep-report.png",
        "4-registered-model.png",
    ]  # fmt: skip
