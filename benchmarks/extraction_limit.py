"""Extraction against its physical limit: the bare ONNX Runtime session on ready tensors.

    .venv/bin/python benchmarks/extraction_limit.py [--n 512] [--rounds 3] [--model clip_vit_b16_int8]
    .venv/bin/python benchmarks/extraction_limit.py --torch            # + torch fp32 on the same tensors
    .venv/bin/python benchmarks/extraction_limit.py --tune             # session settings, one table
    .venv/bin/python benchmarks/extraction_limit.py --batches 8 16 32  # session batch sizes, rotated
    .venv/bin/python benchmarks/extraction_limit.py --job              # the 1,000 + 1,000 / 500 + 500 job

On the same images (the first ``n/2`` of CIFAKE's ``test/REAL`` and ``test/FAKE`` by name, or
``--images DIR`` with any layout), each round times, one after the other in this process:

``bare session``     an ONNX Runtime session on the model's own file, fed the images already decoded,
                     resized and normalised (float32 ``N x 3 x H x W``) in batches of ``--batch``:
                     the limit of this machine for this model.
``decode+preprocess`` the harness's own decode workers (``--workers`` DataLoader processes: read and
                     re-hash the file, decode, resize) with nothing consuming their batches.
``harness``          ``extract_features`` into an empty cache from the files, as a job runs it (encoder
                     built, session created, workers started, features written, read back).
``torch fp32``       (``--torch``) open_clip's ``ViT-B-16`` image tower in eager fp32 (random
                     weights: hub weights cannot be fetched here, speed does not depend on them).

Then it prints every figure side by side (best and median of the rounds), harness / bare session, and
where the harness's time went: the main process's own split (loading the encoder and starting the
workers, waiting for decoded batches, encoding, writing the cache) and, single-threaded in this
process, what one image costs in each stage (read + sha1, decode, resize, normalise, session).

``--tune`` times the bare session under each setting (graph optimisation level, intra-op threads,
spinning, batch size, IO binding) and the harness with each split of the 2 cores between decode
workers and session threads; ``--job`` times a whole ``python -m fid_bench model=MODEL
classifier=logreg`` job with a cold cache on 1,000 + 1,000 CIFAKE training and 500 + 500 test images
against the bare session on the same 3,000 images, in the same run. The load average is printed
before and after: only ratios measured side by side mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
#: where unpacked benchmark data lives (CIFAKE under cifake/): FID_BENCH_DATA, else the current folder
DATA = Path(os.environ.get("FID_BENCH_DATA", "."))
ONNX_PRESETS = {
    "clip_vit_b16_int8": {"file": "clip_vit_b16_int8"},
    "dinov2_vits14_onnx": {
        "file": "dinov2_vits14",
        "expose": ["/backbone/layernorm/Add_1_output_0"],
        "output": "/backbone/layernorm/Add_1_output_0",
        "token": "cls",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
}


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def cifake_images(root: Path, split: str, per_class: int) -> list[str]:
    out = []
    for cls in ("REAL", "FAKE"):
        folder = root / split / cls
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not there (give --cifake DIR with train/ and test/ of CIFAKE)")
        out += sorted(str(p) for p in folder.iterdir())[:per_class]
    return out


def encoder(args: argparse.Namespace, **over: object):
    from fid_bench.features.onnx import OnnxEncoder

    kw = {**ONNX_PRESETS[args.model], "threads": args.threads, "batch_size": args.batch, **over}
    enc = OnnxEncoder(**kw)
    enc.prepare("cpu")
    return enc


def ready_tensors(args: argparse.Namespace, paths: list[str]):
    """Decoded, resized and normalised float32 N x 3 x H x W, and the plain file's session input name."""
    import numpy as np

    from fid_bench.data.decode import load_rgb

    enc = encoder(args, fuse_normalise=False)
    enc.load()
    x = enc.normalise(np.stack([enc.transform(load_rgb(p)) for p in paths]))
    return x, enc


def bare_session(args: argparse.Namespace, enc, **opt: object):
    """A fresh session on the model's own file (cut at ``expose`` when the preset says so), no fusing."""
    import onnxruntime as ort

    o = ort.SessionOptions()
    level = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
    o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level[str(opt.get("level", "all"))])
    o.intra_op_num_threads = int(opt.get("threads", args.threads))
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if opt.get("spin") else "0")
    o.log_severity_level = 3
    path = opt.get("path") or enc.file_path()
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def time_session(sess, x, batch: int, output: str, io_binding: bool = False) -> float:
    name = sess.get_inputs()[0].name
    t0 = time.perf_counter()
    if io_binding:
        binding = sess.io_binding()
        for i in range(0, len(x), batch):
            binding.bind_cpu_input(name, x[i : i + batch])
            binding.bind_output(output)
            sess.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()
    else:
        for i in range(0, len(x), batch):
            sess.run([output], {name: x[i : i + batch]})
    return len(x) / (time.perf_counter() - t0)


def decode_only(paths: list[str], sha1s: list[str], enc, workers: int, batch: int) -> float:
    from torch.utils.data import DataLoader

    from fid_bench.features.extract import _collate, _Images, _worker_context

    t0 = time.perf_counter()
    loader = DataLoader(
        _Images(paths, sha1s, enc.transform, enc.draft_size),
        batch_size=batch,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers else None,
        multiprocessing_context=_worker_context() if workers else None,
    )
    for _ in loader:
        pass
    return len(paths) / (time.perf_counter() - t0)


def harness(args: argparse.Namespace, paths, sha1s, cache: Path, **over: object) -> dict[str, float]:
    from fid_bench.features.extract import extract_features

    workers = int(over.pop("workers", args.workers))  # type: ignore[call-overload]
    enc = encoder(args, **over)
    _, stats = extract_features(
        enc, paths, sha1s, cache, batch_size=args.loader_batch, num_workers=workers, progress=False
    )
    shutil.rmtree(cache, ignore_errors=True)
    stats["whole_images_per_s"] = stats["n_images"] / stats["seconds"]
    return stats


def stage_profile(args: argparse.Namespace, paths: list[str], sess, output: str) -> dict[str, float]:
    """Milliseconds per image in each stage, one process, one thread of Python."""
    import numpy as np

    from fid_bench.data.decode import load_rgb

    enc = encoder(args, fuse_normalise=False)
    enc.load()
    t = dict.fromkeys(("read + sha1", "decode", "resize", "normalise", "session"), 0.0)
    pixels = []
    for p in paths:
        t0 = time.perf_counter()
        with open(p, "rb") as fp:
            hashlib.sha1(fp.read()).hexdigest()
        t1 = time.perf_counter()
        img = load_rgb(p, draft=enc.draft_size)
        t2 = time.perf_counter()
        pixels.append(enc.transform(img))
        t3 = time.perf_counter()
        t["read + sha1"] += t1 - t0
        t["decode"] += t2 - t1
        t["resize"] += t3 - t2
    arr = np.stack(pixels)
    t0 = time.perf_counter()
    x = enc.normalise(arr)
    t["normalise"] = time.perf_counter() - t0
    t["session"] = len(paths) / time_session(sess, x, args.batch, output)
    return {k: 1000 * v / len(paths) for k, v in t.items()}


def torch_run(args: argparse.Namespace, x) -> float:
    import torch

    from fid_bench.backbones.open_clip import OpenClipBackbone
    from fid_bench.features.encoders import FrozenEncoder

    if not hasattr(torch_run, "model"):
        torch.set_num_threads(args.threads)
        tower = FrozenEncoder(OpenClipBackbone("ViT-B-16", pretrained=False))
        tower.prepare("cpu")
        tower.load()
        torch_run.model = tower._model  # type: ignore[attr-defined]
    model = torch_run.model  # type: ignore[attr-defined]
    xt = torch.from_numpy(x)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(xt), args.batch):
            model(xt[i : i + args.batch])
    return len(xt) / (time.perf_counter() - t0)


def row(name: str, vals: list[float], ref: float | None = None) -> str:
    med = statistics.median(vals)
    ratio = f"{med / ref:.2f}" if ref else ""
    return f"| {name} | {max(vals):.1f} | {med:.1f} | {ratio} |"


def prepared(args: argparse.Namespace):
    """The images (``--images`` or CIFAKE's test split), their sha1s, their ready tensors, the
    encoder, its output name and a bare session on its file, warmed up."""
    if args.images:
        paths = sorted(str(p) for p in Path(args.images).rglob("*") if p.is_file())[: args.n]
    else:
        paths = cifake_images(args.cifake, "test", args.n // 2)
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    x, enc = ready_tensors(args, paths)
    output = enc.describe()["output"]
    sess = bare_session(args, enc)
    time_session(sess, x[: args.batch], args.batch, output)  # warm-up
    return paths, sha1s, x, enc, output, sess


def main_rounds(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fid_bench_limit_"))
    paths, sha1s, x, enc, output, sess = prepared(args)
    res: dict[str, list[float]] = {"bare": [], "decode": [], "harness": [], "harness_extract": []}
    if args.torch:
        res["torch"] = []
    parts: list[dict[str, float]] = []
    for r in range(args.rounds):
        res["bare"].append(time_session(sess, x, args.batch, output))
        res["decode"].append(decode_only(paths, sha1s, enc, args.workers, args.loader_batch))
        stats = harness(args, paths, sha1s, tmp / f"cache{r}")
        res["harness"].append(stats["whole_images_per_s"])
        res["harness_extract"].append(stats["extract/images_per_s"])
        parts.append({k: v for k, v in stats.items() if k.startswith("extract/") and k.endswith("_seconds")})
        parts[-1]["whole call"] = stats["seconds"]
        if args.torch:
            res["torch"].append(torch_run(args, x))
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items())
            + f" images/s ({load()})",
            flush=True,
        )
    prof = stage_profile(args, paths[: min(len(paths), 128)], sess, output)
    bare = statistics.median(res["bare"])
    print(
        f"\n{args.model}: {len(paths)} images, batch {args.batch} (loader {args.loader_batch}), "
        f"{args.threads} session threads, {args.workers} decode workers, {args.rounds} rounds; {load()} (end)\n"
    )
    print("| variant | best images/s | median images/s | / bare session |")
    print("|---|---|---|---|")
    print(row("bare session (ready tensors)", res["bare"], bare))
    print(row("decode + preprocess alone (workers)", res["decode"], bare))
    print(row("harness, whole call, cold cache", res["harness"], bare))
    print(row("harness, extraction part (extract/images_per_s)", res["harness_extract"], bare))
    if args.torch:
        print(row("torch fp32 eager (open_clip ViT-B-16)", res["torch"], bare))
        t = statistics.median(res["torch"])
        print(
            f"\nharness / torch fp32: {statistics.median(res['harness']) / t:.2f}; "
            f"bare session / torch fp32: {bare / t:.2f}"
        )
    print(
        f"\nharness / bare session (medians): {statistics.median(res['harness']) / bare:.3f} whole call, "
        f"{statistics.median(res['harness_extract']) / bare:.3f} extraction part"
    )
    print("\nwhere the harness's time went (main process, median over rounds, seconds):")
    print("| part | seconds | share |")
    print("|---|---|---|")
    whole = statistics.median(p["whole call"] for p in parts)
    for key in parts[0]:
        v = statistics.median(p[key] for p in parts)
        print(f"| {key.removeprefix('extract/').removesuffix('_seconds')} | {v:.2f} | {v / whole:.1%} |")
    ideal = len(paths) / bare
    print(f"| (the bare session on these images) | {ideal:.2f} | {ideal / whole:.1%} |")
    print(
        "\nper image, one process, one Python thread (ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in prof.items())
    )
    shutil.rmtree(tmp, ignore_errors=True)


def main_tune(args: argparse.Namespace) -> None:
    paths = cifake_images(args.cifake, "test", args.n // 2)
    sha1s = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    x, enc = ready_tensors(args, paths)
    output = enc.describe()["output"]
    grid: list[dict[str, object]] = [{}]  # the defaults first: every row is read against them
    grid += [dict(level=lv) for lv in ("basic", "extended")]
    grid += [
        dict(threads=t, spin=s) for t in (1, 2) for s in (False, True) if (t, s) != (args.threads, False)
    ]
    grid += [dict(batch=b) for b in (8, 16, 32, 64) if b != args.batch]
    grid += [dict(io_binding=True)]
    res: dict[str, list[float]] = {}
    sessions = {}
    for g in grid:
        key = ", ".join(f"{k}={v}" for k, v in g.items()) or "defaults (level=all, no spinning)"
        opt = {k: v for k, v in g.items() if k in ("level", "threads", "spin")}
        sessions[key] = (bare_session(args, enc, **opt), g)
        time_session(sessions[key][0], x[: args.batch], args.batch, output)
    harness_grid = [dict(workers=w, threads=t) for w in (1, 2) for t in (1, 2)]
    tmp = Path(tempfile.mkdtemp(prefix="fid_bench_tune_"))
    for r in range(args.rounds):
        for key, (sess, g) in sessions.items():
            res.setdefault(key, []).append(
                time_session(sess, x, int(g.get("batch", args.batch)), output, bool(g.get("io_binding")))
            )
        for g in harness_grid:
            key = f"harness: {g['workers']} decode workers, {g['threads']} session threads"
            stats = harness(args, paths, sha1s, tmp / "c", threads=g["threads"], workers=g["workers"])
            res.setdefault(key, []).append(stats["whole_images_per_s"])
        print(f"round {r + 1} done ({load()})", flush=True)
    ref = statistics.median(res[next(iter(res))])
    print(
        f"\n{args.model}, {len(paths)} images, {args.rounds} rounds; defaults: level=all, threads={args.threads}, "
        f"spin=False, batch={args.batch}, no IO binding; {load()} (end)\n"
    )
    print(f"| setting | best images/s | median images/s | / {next(iter(res))} |")
    print("|---|---|---|---|")
    for key, vals in res.items():
        print(row(key, vals, ref))


def main_batches(args: argparse.Namespace) -> None:
    """The session batch sizes of ``--batches`` side by side, bare session and harness, the order of
    the sizes rotated every round (so no size always runs first or last)."""
    paths, sha1s, x, _, output, sess = prepared(args)
    sizes = list(args.batches)
    res: dict[str, list[float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="fid_bench_batches_"))
    for r in range(args.rounds):
        for b in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
            res.setdefault(f"bare session, batch {b}", []).append(time_session(sess, x, b, output))
            stats = harness(argparse.Namespace(**{**vars(args), "batch": b}), paths, sha1s, tmp / "c")
            res.setdefault(f"harness, batch {b}", []).append(stats["whole_images_per_s"])
        print(f"round {r + 1} done ({load()})", flush=True)
    ref_key = f"harness, batch {args.batch}" if args.batch in sizes else next(iter(res))
    ref = statistics.median(res[ref_key])
    print(
        f"\n{args.model}, {len(paths)} images, {args.rounds} rounds, {args.threads} session threads; {load()} (end)\n"
    )
    print(f"| setting | best images/s | median images/s | / {ref_key} |")
    print("|---|---|---|---|")
    for key in sorted(res, key=lambda k: (k.split(",")[0], int(k.rsplit(" ", 1)[-1]))):
        print(row(key, res[key], ref))


def main_job(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fid_bench_job_"))
    root = tmp / "data"
    all_paths = []
    for split, n in (("train", 1000), ("test", 500)):
        for p in cifake_images(args.cifake, split, n if not args.small else n // 10):
            dest = root / split / Path(p).parent.name / Path(p).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)  # the folder reader refuses links leading out of its root
            all_paths.append(p)
    x, enc = ready_tensors(args, all_paths)
    output = enc.describe()["output"]
    sess = bare_session(args, enc)
    time_session(sess, x[: args.batch], args.batch, output)
    cmd = [
        sys.executable,
        "-m",
        "fid_bench",
        f"model={args.model}",
        "classifier=logreg",
        "data=folder",
        f"data.root={root}",
        f"features.cache_dir={tmp / 'cache'}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"hydra.run.dir={tmp / 'run'}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "FID_BENCH_WEIGHTS_DIR": os.environ.get("FID_BENCH_WEIGHTS_DIR", str(_weights_dir())),
    }
    bare, job = [], []
    for r in range(args.rounds):
        bare.append(len(x) / time_session(sess, x, args.batch, output))
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, check=False)
        job.append(time.perf_counter() - t0)
        if done.returncode:
            raise SystemExit(f"the job failed:\n{done.stderr[-2000:]}")
        print(f"round {r + 1}: bare session {bare[-1]:.1f} s, job {job[-1]:.1f} s ({load()})", flush=True)
    b, j = statistics.median(bare), statistics.median(job)
    print(f"\n{len(all_paths)} images ({args.model}, logreg); {load()} (end)")
    print("| what | seconds (median of rounds) |\n|---|---|")
    print(f"| bare session on the {len(all_paths)} ready tensors | {b:.1f} |")
    print(
        f"| `python -m fid_bench model={args.model} classifier=logreg`, cold cache, whole process | {j:.1f} |"
    )
    print(f"\njob / bare session: {j / b:.3f} (target <= 1.15)")
    shutil.rmtree(tmp, ignore_errors=True)


def _weights_dir() -> Path:
    from fid_bench.backbones.onnx_files import default_weights_dir

    return default_weights_dir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="clip_vit_b16_int8", choices=sorted(ONNX_PRESETS))
    ap.add_argument("--n", type=int, default=512, help="images (half real, half fake)")
    ap.add_argument("--images", default=None, help="a folder of images instead of CIFAKE's test split")
    ap.add_argument("--cifake", type=Path, default=DATA / "cifake", help="CIFAKE unpacked: train/ and test/")
    ap.add_argument("--batch", type=int, default=32, help="images per session call")
    ap.add_argument(
        "--loader-batch", type=int, default=64, help="images per decoded batch (features.batch_size)"
    )
    ap.add_argument("--threads", type=int, default=2, help="session intra-op threads")
    ap.add_argument("--workers", type=int, default=2, help="decode workers (features.num_workers)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch", action="store_true", help="also torch fp32 eager on the same tensors")
    ap.add_argument("--tune", action="store_true", help="session settings instead")
    ap.add_argument(
        "--batches", type=int, nargs="+", default=None, help="session batch sizes side by side instead"
    )
    ap.add_argument("--job", action="store_true", help="the whole-job criterion instead")
    ap.add_argument("--small", action="store_true", help="--job on a tenth of the images (a smoke test)")
    args = ap.parse_args()
    print(load(), "(start)", flush=True)
    if args.tune:
        main_tune(args)
    elif args.batches:
        main_batches(args)
    elif args.job:
        main_job(args)
    else:
        main_rounds(args)


if __name__ == "__main__":
    main()
