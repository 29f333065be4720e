"""Pretrained weights from package files against random weights, small_cnn and the CLIP probe, on
CIFAKE and on sd_art (docs/BENCHMARKS.md, "Pretrained against random weights: the whole CIFAKE test
split and sd_art"). One MLflow experiment, every job a plain ``python -m fid_bench`` run:

    python benchmarks/pretrained.py --cifake CIFAKE --sd-art SD_ART [--steps ...] [--report-only]

``CIFAKE``: the unpacked set (``train/{REAL,FAKE}``, ``test/{REAL,FAKE}``); the first ``--per-class``
training images of each class by file name and the whole test split are hard-linked (copied when
links fail) into ``--work``/cifake, whose reader keeps 20 % of the training images for validation.
``SD_ART``: a ``{real,fake}`` folder scored by every run as ``eval.extra`` (its ROC-AUC logged in the
run) and again with ``fid-bench predict`` for the paired tests there. Steps (each skipped when its
run already finished in the experiment, so a stopped run resumes; feature caches carry over):

* ``effnet_pretrained`` / ``effnet_random``: ``model=efficientnet_lite0`` fine-tuned at
  ``--size`` px for ``--epochs`` epochs, with its pretrained weights / ``model.pretrained=false``;
  the same recipe otherwise.
* ``small_cnn``: its own recipe at CIFAKE's 32 px.
* ``dinov2_probe``: frozen ``dinov2_vits14`` at ``--dino-size`` px + logistic regression.
* ``clip_probe``: ``model=clip_vit_b16_int8 classifier=logreg``.

Then ``fid-bench compare A B`` for every pair below (DeLong on the CIFAKE test rows), DeLong on the
sd_art scores, and ``fid-bench leaderboard``; the tables are printed and written to ``--work``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fid_bench.evaluation.paired import delong_covariance, delong_test
from fid_bench.markdown import table

STEPS = ("effnet_pretrained", "effnet_random", "small_cnn", "dinov2_probe", "clip_probe")
#: (A, B): A - B is tested, on the CIFAKE test rows and on sd_art
PAIRS = (
    ("effnet_pretrained", "effnet_random"),
    ("effnet_pretrained", "small_cnn"),
    ("effnet_random", "small_cnn"),
    ("effnet_pretrained", "clip_probe"),
    ("dinov2_probe", "clip_probe"),
    ("dinov2_probe", "small_cnn"),
)


def prepare_cifake(src: Path, dst: Path, per_class: int) -> Path:
    """``dst`` with the first ``per_class`` training images of each class (by name) and every test image."""
    for split, cap in (("train", per_class), ("test", None)):
        for cls in ("REAL", "FAKE"):
            names = sorted(p.name for p in (src / split / cls).iterdir() if p.is_file())
            out = dst / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for name in names[:cap]:
                target = out / name
                if target.exists():
                    continue
                try:
                    os.link(src / split / cls / name, target)
                except OSError:  # another file system
                    shutil.copy2(src / split / cls / name, target)
    return dst


def plan(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, str]]]:
    """Steps and pairs; ``--also-size S`` adds the EfficientNet pair at S px (``effnet_*_{S}px``)."""
    steps, pairs = list(STEPS), list(PAIRS)
    if args.also_size:
        pre, rand = f"effnet_pretrained_{args.also_size}px", f"effnet_random_{args.also_size}px"
        steps[2:2] = [pre, rand]
        pairs += [
            (pre, rand),
            (pre, "small_cnn"),
            (rand, "small_cnn"),
            (pre, "clip_probe"),
            (pre, "effnet_pretrained"),
        ]
    return steps, pairs


def step_overrides(step: str, args: argparse.Namespace) -> list[str]:
    if step.endswith("px"):  # the --also-size variant
        step = step.rsplit("_", 1)[0]
        tune = [f"data.image_size={args.also_size}", f"trainer.max_epochs={args.also_epochs}"]
    else:
        tune = [f"data.image_size={args.size}", f"trainer.max_epochs={args.epochs}"]
    return {
        "effnet_pretrained": ["model=efficientnet_lite0", *tune],
        "effnet_random": ["model=efficientnet_lite0", "model.pretrained=false", *tune],
        "small_cnn": ["model=small_cnn"],
        "dinov2_probe": ["model=dinov2_vits14", "classifier=logreg", f"data.image_size={args.dino_size}"],
        "clip_probe": ["model=clip_vit_b16_int8", "classifier=logreg"],
    }[step]


def finished_runs(client, experiment: str, steps: list[str]) -> dict[str, object]:  # noqa: ANN001
    """The newest finished run of each step (``task_name`` tag) in the experiment."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]
    )
    out: dict[str, object] = {}
    for run in runs:
        step = run.data.tags.get("task_name")
        if step in steps and step not in out and "roc_auc" in run.data.metrics:
            out[step] = run
    return out


def run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), f"> {log}", flush=True)
    with log.open("a") as fh:
        fh.write(
            f"\n$ {' '.join(cmd)}\n# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {_load()}\n"
        )
        fh.flush()
        start = time.monotonic()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
        fh.write(f"# exit {proc.returncode} after {time.monotonic() - start:.0f} s, {_load()}\n")
    if proc.returncode:
        raise SystemExit(f"{cmd[2] if len(cmd) > 2 else cmd[0]} failed (exit {proc.returncode}): see {log}")


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def sd_art_truth(ids: pd.Series) -> np.ndarray:
    """1 for ``fake/...`` ids, 0 for ``real/...`` (the folder names are the labels)."""
    top = ids.str.split("/").str[0].str.lower()
    if not top.isin(["fake", "real"]).all():
        raise SystemExit("sd_art ids must start with fake/ or real/")
    return (top == "fake").to_numpy(dtype=int)


def auc_interval(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    """ROC-AUC and its 95 % DeLong interval."""
    aucs, cov = delong_covariance(y, [s])
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    auc = float(aucs[0])
    return auc, auc - 1.959964 * se, auc + 1.959964 * se


def _f(v: float, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def main() -> None:  # noqa: C901, PLR0912, PLR0915 - one script, steps in order
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifake", type=Path, required=True, help="unpacked CIFAKE: train/ and test/")
    parser.add_argument("--sd-art", type=Path, required=True, help="sd_art: real/ and fake/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fid_bench_pretrained"))
    parser.add_argument("--experiment", default="pretrained19")
    parser.add_argument("--tracking-uri", default=None, help="default: sqlite:///WORK/mlflow.db")
    parser.add_argument(
        "--per-class", type=int, default=2500, help="training images per class (20 %% validate)"
    )
    parser.add_argument("--size", type=int, default=32, help="EfficientNet input side (CIFAKE is 32 px)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dino-size", type=int, default=112)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per job (OMP_NUM_THREADS, model.threads of the ONNX encoder); default: the libraries'",
    )
    parser.add_argument("--shards", type=int, default=1, help="parallel extraction jobs before a probe step")
    parser.add_argument(
        "--also-size", type=int, default=None, help="the EfficientNet pair again at this side"
    )
    parser.add_argument("--also-epochs", type=int, default=None, help="its epochs (default: --epochs)")
    parser.add_argument("--steps", nargs="*", default=None, help=f"default: all ({', '.join(STEPS)}, ...)")
    parser.add_argument("--report-only", action="store_true", help="only the comparisons and tables")
    args = parser.parse_args()
    args.also_epochs = args.also_epochs or args.epochs
    steps, pairs = plan(args)
    unknown = sorted(set(args.steps or []) - set(steps))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; known: {steps}")

    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    uri = args.tracking_uri or f"sqlite:///{work}/mlflow.db"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")
    if args.threads:
        # on a shared CPU, one thread per job avoids threads spinning on each other (measured: 9x)
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    os.environ.update(env)
    client = mlflow.MlflowClient(uri)
    cifake = prepare_cifake(args.cifake, work / "cifake", args.per_class)
    sd_art = args.sd_art.absolute()
    python = sys.executable
    fid_bench = [python, "-m", "fid_bench.cli"]
    common = [
        "data=folder",
        f"data.root={cifake}",
        "data.name=cifake_pretrained",
        f"tracking.experiment={args.experiment}",
        f"eval.extra=[{{name: sd_art, data: folder, root: {sd_art}}}]",
        "trainer.progress_bar=false",
        f"hydra.run.dir={work}/outputs/${{task_name}}",
    ]
    if not args.report_only:
        for step in args.steps or steps:
            if step in finished_runs(client, args.experiment, steps):
                print(f"{step}: finished run found, skipped", flush=True)
                continue
            cmd = [python, "-m", "fid_bench", *common, f"task_name={step}", *step_overrides(step, args)]
            if args.threads and step == "clip_probe":
                cmd.append(f"model.threads={args.threads}")
            if args.shards > 1 and step.endswith("_probe"):
                # the frozen encoder's extraction split over parallel jobs first: the step then reads the cache
                shard_jobs = [
                    ([*cmd, f"features.num_shards={args.shards}", f"features.shard={i}"], i)
                    for i in range(args.shards)
                ]
                procs = []
                for shard_cmd, i in shard_jobs:
                    shard_cmd[shard_cmd.index(f"task_name={step}")] = f"task_name={step}_shard{i}"
                    log = (work / f"{step}_shard{i}.log").open("a")
                    print("$", " ".join(shard_cmd), f"> {log.name}", flush=True)
                    procs.append((subprocess.Popen(shard_cmd, stdout=log, stderr=subprocess.STDOUT), log))
                for proc, log in procs:
                    proc.wait()
                    log.close()
            run(cmd, work / f"{step}.log")

    runs = finished_runs(client, args.experiment, steps)
    print(f"finished: {', '.join(s for s in steps if s in runs) or 'none'}", flush=True)
    # sd_art scores of every finished run, for intervals and paired tests there
    sd_scores: dict[str, pd.DataFrame] = {}
    for step, r in runs.items():
        out = work / f"sd_art_{step}_{r.info.run_id[:8]}.csv"
        if not out.is_file():
            run(
                [
                    *fid_bench,
                    "predict",
                    "--run",
                    r.info.run_id,
                    "--data",
                    "folder",
                    "--root",
                    str(sd_art),
                    "--out",
                    str(out),
                    "--no-progress",
                ],
                work / f"predict_{step}.log",
            )
        sd_scores[step] = pd.read_csv(out, dtype={"id": str}).sort_values("id").reset_index(drop=True)

    lines = [f"Experiment `{args.experiment}` at `{uri}`; {_load()}", ""]
    rows = []
    for step in steps:
        if step not in runs:
            rows.append([step, "not run", "", "", "", "", ""])
            continue
        m = runs[step].data.metrics
        sd = sd_scores[step]
        auc, lo, hi = auc_interval(sd_art_truth(sd["id"]), sd["score"].to_numpy(float))
        logged = m.get("sd_art/roc_auc", math.nan)
        rows.append(
            [
                step,
                f"{_f(m['roc_auc'])} ({_f(m.get('roc_auc_ci_low', math.nan))}–{_f(m.get('roc_auc_ci_high', math.nan))})",
                _f(m.get("accuracy", math.nan)),
                f"{_f(m.get('f1_at_threshold', math.nan))} ({_f(m.get('f1_ci_low', math.nan))}–{_f(m.get('f1_ci_high', math.nan))})",
                f"{_f(auc)} ({_f(lo)}–{_f(hi)})"
                + ("" if abs(auc - logged) < 1e-6 else f" [logged {_f(logged)}]"),
                _f(m.get("epochs_trained", math.nan), 0),
                f"{_f(m.get('fit_s', math.nan), 0)} s",
            ]
        )
    lines += table(
        [
            "run",
            "CIFAKE test ROC-AUC (95 % CI)",
            "accuracy",
            "F1 at the validation threshold (95 % CI)",
            "sd_art ROC-AUC (95 % DeLong CI)",
            "epochs",
            "fit",
        ],
        rows,
    ).splitlines()
    lines += [
        "",
        "Paired, A − B (DeLong): CIFAKE test rows from `fid-bench compare`, sd_art from the predict scores",
        "",
    ]
    prow = []
    for a, b in pairs:
        if a not in runs or b not in runs:
            continue
        cmp_log = work / f"compare_{a}_{b}.txt"
        if not cmp_log.is_file():
            proc = subprocess.run(
                [
                    *fid_bench,
                    "compare",
                    runs[a].info.run_id,
                    runs[b].info.run_id,
                    "--no-log",
                    "--out",
                    str(work / f"compare_{a}_{b}"),
                ],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
            cmp_log.write_text(proc.stdout + proc.stderr)
        sa, sb = sd_scores[a], sd_scores[b]
        if sa["id"].tolist() != sb["id"].tolist():
            raise SystemExit(f"{a} and {b} scored different sd_art images")
        d = delong_test(sd_art_truth(sa["id"]), sa["score"].to_numpy(float), sb["score"].to_numpy(float))
        prow.append(
            [
                f"{a} − {b}",
                f"see {cmp_log.name}",
                f"{d.diff:+.4f} ({d.ci_low:+.4f} to {d.ci_high:+.4f})",
                _p(d.p_value),
            ]
        )
    lines += table(
        ["A − B", "CIFAKE test", "sd_art ROC-AUC difference (95 % CI)", "sd_art DeLong p"], prow
    ).splitlines()
    board = subprocess.run(
        [*fid_bench, "leaderboard", "-e", args.experiment, "--top", "0", "-f", "markdown"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    lines += ["", "`fid-bench leaderboard`:", "", board.stdout.strip(), board.stderr.strip()]
    text = "\n".join(lines) + "\n"
    (work / "report.md").write_text(text)
    print(text)
    for a, b in pairs:
        path = work / f"compare_{a}_{b}.txt"
        if path.is_file():
            print(f"--- fid-bench compare {a} {b}\n{path.read_text()}")


if __name__ == "__main__":
    main()
