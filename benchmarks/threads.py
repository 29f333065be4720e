"""Seconds per epoch of README's offline fine-tuning command under three thread settings, paired.

The command is README's (``HF_HUB_OFFLINE=1 python -m fid_bench model=efficientnet_lite0
data.image_size=64``, the demo's 400 images) with ``trainer.max_epochs`` epochs, each run in its own
process, the three settings taking turns within every round (the order rotates from round to round,
so a change of load hits each of them alike):

    auto       trainer.threads=null (the default): the CPUs available minus the loader workers
    all_cores  trainer.threads=<CPUs available>: torch's own default before trainer.threads existed
    omp1       OMP_NUM_THREADS=1 in the environment (README's former prefix), trainer.threads=null

Seconds per epoch are ``epoch_train_s`` (first to last training batch of an epoch) read back from
each run's MLflow metrics, the resolved ``torch_threads`` too; the load average is read before and
after every run. Needs ``fid-bench weights get efficientnet_lite0`` once. Usage:

    python benchmarks/threads.py                              # 3 rounds of 2 epochs
    python benchmarks/threads.py --rounds 4 --epochs 3 --work /tmp/threads_bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = ("auto", "all_cores", "omp1")


def cpus() -> int:
    from fid_bench.finetune.threads import available_cpus

    return available_cpus()


def command(variant: str, args: argparse.Namespace, uri: str, work: Path, tag: str) -> tuple[list[str], dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(REPO))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # each variant starts from the libraries' defaults
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "fid_bench",
        "model=efficientnet_lite0",
        f"data.image_size={args.size}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.progress_bar=false",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        "tracking.experiment=threads_bench",
        f"task_name={tag}",
        f"hydra.run.dir={work}/outputs/{tag}",
    ]
    if variant == "all_cores":
        cmd.append(f"trainer.threads={cpus()}")
    elif variant == "omp1":
        env["OMP_NUM_THREADS"] = "1"
    return cmd, env


def newest_run(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    return run


def main() -> None:
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="data.image_size (README's command: 64)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fid_bench_threads"))
    args = parser.parse_args()
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    print(f"cpus available={cpus()} os.cpu_count()={os.cpu_count()}", flush=True)

    rows = []
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            tag = f"{variant}_r{r}"
            cmd, env = command(variant, args, uri, work, tag)
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            with (work / f"{tag}.log").open("w") as log:
                done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
            wall = time.perf_counter() - t0
            load_after = os.getloadavg()[0]
            if done.returncode != 0:
                sys.exit(f"{tag}: exit code {done.returncode}, see {work / (tag + '.log')}")
            run = newest_run(client, "threads_bench")
            epochs = [
                m.value
                for m in sorted(
                    client.get_metric_history(run.info.run_id, "epoch_train_s"), key=lambda m: m.step
                )
            ]
            row = {
                "round": r,
                "variant": variant,
                "torch_threads": run.data.metrics.get("torch_threads"),
                "epoch_train_s": epochs,
                "fit_s": run.data.metrics.get("fit_s"),
                "wall_s": wall,
                "load_before": load_before,
                "load_after": load_after,
                "clock": time.strftime("%H:%M:%S", time.gmtime()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    (work / "results.json").write_text(json.dumps(rows, indent=1))

    print("\n| round | setting | torch threads | s/epoch (each epoch) | wall s | load average before-after |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        per_epoch = ", ".join(f"{v:.1f}" for v in row["epoch_train_s"])
        print(
            f"| {row['round'] + 1} | {row['variant']} | {row['torch_threads']:.0f} | {per_epoch} | "
            f"{row['wall_s']:.0f} | {row['load_before']:.1f}-{row['load_after']:.1f} |"
        )
    mean = {(row["round"], row["variant"]): statistics.mean(row["epoch_train_s"]) for row in rows}
    print("\nmean s/epoch of each run, over the auto run of the same round (min, median, max):")
    for variant in VARIANTS:
        ratios = [mean[(r, variant)] / mean[(r, "auto")] for r in range(args.rounds)]
        print(
            f"  {variant:10s} median s/epoch {statistics.median(mean[(r, variant)] for r in range(args.rounds)):6.2f}"
            f"  / auto: {min(ratios):.2f}, {statistics.median(ratios):.2f}, {max(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
