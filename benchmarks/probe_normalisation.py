"""Feature normalisation before each feature classifier (``classifier.normalise``), measured.

    .venv/bin/python benchmarks/probe_normalisation.py --cifake DIR --held-out DIR \
        [--train 1000] [--test 500] [--held-out-n 500] [--model clip_vit_b16_int8] \
        [--classifiers logreg,knn,...] [--norms standard,l2,none]

Frozen ``clip_vit_b16_int8`` features (the harness's extraction and feature cache, ``--cache-dir``)
of: ``--train`` CIFAKE training images per class (``DIR/train/{REAL,FAKE}``), ``--test`` test images
per class (``DIR/test/{REAL,FAKE}``) and ``--held-out-n`` images per class of another source
(``DIR/{real,fake}``, e.g. sd_art), each list the first files in name order. For every feature
classifier config (``classifier=logreg,knn,rf,gboost,lightgbm``, their estimators as configured)
and every ``normalise`` (``standard``, ``l2``, ``none``): the harness's pipeline (``FeatureDetector``)
fitted on the training rows, ROC-AUC on the CIFAKE test rows (in distribution) and on the
held-out source, with 95 % bootstrap intervals (``--bootstrap`` resamples). Prints a markdown
table and the load average before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLASSIFIERS = ("logreg", "knn", "rf", "gboost", "lightgbm")
NORMS = ("standard", "l2", "none")
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def files(folder: Path, n: int) -> list[str]:
    out = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if len(out) < n:
        sys.exit(f"{folder}: {len(out)} images, {n} wanted")
    return [str(p) for p in out[:n]]


def sha1(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def auc_interval(y, s, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    point = float(roc_auc_score(y, s))
    values = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i])) == 2:
            values.append(roc_auc_score(y[i], s[i]))
    lo, hi = np.percentile(values, [2.5, 97.5]) if values else (float("nan"),) * 2
    return point, float(lo), float(hi)


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifake", type=Path, required=True)
    ap.add_argument("--held-out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--held-out-n", type=int, default=500)
    ap.add_argument("--model", default="clip_vit_b16_int8")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "fid_bench")
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--classifiers", default=",".join(CLASSIFIERS), help="comma-separated subset")
    ap.add_argument("--norms", default=",".join(NORMS), help="comma-separated subset")
    args = ap.parse_args()

    import numpy as np
    from hydra import compose, initialize_config_dir

    from fid_bench.features.extract import extract_features
    from fid_bench.features.onnx import OnnxEncoder
    from fid_bench.features_track.detector import FeatureDetector

    print(load())
    sets = {}
    for name, root, sub, n in (
        ("train", args.cifake / "train", ("REAL", "FAKE"), args.train),
        ("test", args.cifake / "test", ("REAL", "FAKE"), args.test),
        ("held_out", args.held_out, ("real", "fake"), args.held_out_n),
    ):
        paths = files(root / sub[0], n) + files(root / sub[1], n)
        sets[name] = (paths, np.array([0] * n + [1] * n))
    encoder = OnnxEncoder(file=args.model)
    feats = {}
    for name, (paths, _) in sets.items():
        t0 = time.perf_counter()
        x, stats = extract_features(
            encoder, paths, [sha1(p) for p in paths], args.cache_dir, num_workers=args.workers
        )
        feats[name] = x
        print(
            f"{name}: {len(paths)} images, {int(stats['n_extracted'])} extracted, {time.perf_counter() - t0:.0f} s"
        )

    rows = []
    with initialize_config_dir(config_dir=str(REPO / "fid_bench" / "conf"), version_base="1.3"):
        for clf in args.classifiers.split(","):
            node = compose("config", overrides=[f"classifier={clf}"]).classifier
            for norm in args.norms.split(","):
                det = FeatureDetector(node.estimator, name=clf, normalise=norm, threads=1)
                pipe, _ = det._pipeline_for(None)
                t0 = time.perf_counter()
                pipe.fit(feats["train"], sets["train"][1])
                seconds = time.perf_counter() - t0
                cells = []
                for name in ("test", "held_out"):
                    s = pipe.predict_proba(feats[name])[:, 1]
                    cells.append(auc_interval(sets[name][1], s, args.bootstrap))
                rows.append((clf, norm, *cells, seconds))
                print(
                    f"{clf} {norm}: {cells[0][0]:.3f} / {cells[1][0]:.3f} ({seconds:.1f} s fit)", flush=True
                )
    print(load())
    print(
        f"\n{args.model}; train {args.train}+{args.train} CIFAKE, test {args.test}+{args.test} CIFAKE, "
        f"held out {args.held_out_n}+{args.held_out_n} {args.held_out.name}"
    )
    print("| classifier | normalise | CIFAKE test ROC-AUC [95 % CI] | held-out ROC-AUC [95 % CI] | fit s |")
    print("|---|---|---|---|---|")
    for clf, norm, (a, alo, ahi), (b, blo, bhi), sec in rows:
        print(
            f"| {clf} | {norm} | {a:.3f} [{alo:.3f}, {ahi:.3f}] | {b:.3f} [{blo:.3f}, {bhi:.3f}] | {sec:.1f} |"
        )


if __name__ == "__main__":
    main()
