"""A detector written without fid_bench, for the `fid-bench import-predictions` example of docs/COMPARISON.md.

It stands for "a detector from another tool": it reads a class-folder data set on its own, fits a
scikit-learn model on simple pixel statistics of the train images (colour histograms and the
energy of a high-pass residual, where up-sampling and denoising leave traces) and writes
``id,score`` for every test image, ids being paths relative to the root as fid_bench's folder
reader names them.

    python scripts/outside_detector.py --root DIR --out outside.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier

CLASSES = {"REAL": 0, "FAKE": 1}


def features(path: Path) -> np.ndarray:
    """Per-channel 16-bin histograms, mean and std, and residual statistics of a 3x3 high-pass."""
    x = np.asarray(Image.open(path).convert("RGB").resize((32, 32)), dtype=np.float32) / 255.0
    hist = [np.histogram(x[..., c], bins=16, range=(0, 1))[0] / x[..., c].size for c in range(3)]
    grey = x.mean(axis=2)
    blur = sum(np.roll(np.roll(grey, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    residual = (grey - blur)[1:-1, 1:-1]
    stats = [x.mean((0, 1)), x.std((0, 1)), [np.abs(residual).mean(), residual.std(), (residual**2).max()]]
    return np.concatenate([*hist, *map(np.ravel, stats)])


def split_files(root: Path, split: str) -> list[tuple[str, Path, int]]:
    files = []
    for name, label in CLASSES.items():
        for path in sorted((root / split / name).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append((path.relative_to(root).as_posix(), path, label))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="root/{train,test}/{REAL,FAKE}/")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (id,score)")
    args = parser.parse_args(argv)
    train, test = split_files(args.root, "train"), split_files(args.root, "test")
    X = np.stack([features(p) for _, p, _ in train])
    y = np.array([label for *_, label in train])
    model = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(X, y)
    scores = model.predict_proba(np.stack([features(p) for _, p, _ in test]))[:, 1]
    pd.DataFrame({"id": [i for i, *_ in test], "score": scores}).to_csv(args.out, index=False)
    print(f"trained on {len(train)} images, scored {len(test)} test images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
