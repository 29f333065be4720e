"""Images to score with a trained model: a Kaggle ``test.csv``, a class-folder data set, any folder.

Nothing is dropped: an input the readers cannot use stays in, marked unreadable with its reason,
so the written file still holds every id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.data.csv_table import read_csv_table
from fid_bench.data.readers import (
    IMAGE_EXTENSIONS,
    OUTSIDE_ROOT,
    FolderReader,
    KaggleReader,
    image_name,
    layout_bases,
    walk_files,
)
from fid_bench.data.validation import validate_files
from fid_bench.errors import FidBenchError


@dataclass
class Inputs:
    """Images to score: ``ids`` and ``paths`` aligned; ``unreadable`` maps a position to its reason."""

    ids: list[str]
    paths: list[str]
    kind: str  # "kaggle" | "images"
    unreadable: dict[int, str] = field(default_factory=dict)
    expected_ids: list[str] | None = None  # the ids the written file must hold, in order


def images_under(folder: str | Path, cache_dir: str | Path | None = None) -> Inputs:
    """Every image file under ``folder`` (recursively, named like an image by the folder reader's rule,
    ``image_name``: an image suffix or none; hidden files and folders ignored, as in the readers); ids are POSIX relative paths. ``folder`` may be a link; a link below it that leads
    outside it is listed as unreadable (``outside_root``), never followed.

    Files are checked (fully decoded, results cached in ``cache_dir``) before scoring, so unreadable
    ones are known and reported whichever predictor scores the rest.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FidBenchError(f"--images {folder}: not a folder")
    # the readers' symlink rule: DIR may be a link, links found below it may not lead outside it
    top = str(root.absolute())
    found = sorted(
        (Path(p).relative_to(top).as_posix(), p, reason)
        for p, reason in walk_files(top, layout_bases(top, top))
        if image_name(os.path.basename(p))
    )
    if not found:
        raise FidBenchError(
            f"--images {folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}, or no suffix)"
        )
    ids = [i for i, _, _ in found]
    paths = [p for _, p, _ in found]
    inputs = Inputs(ids=ids, paths=paths, kind="images", expected_ids=ids)
    inside = [i for i, (_, _, reason) in enumerate(found) if not reason]
    checks = validate_files([paths[i] for i in inside], cache_dir=cache_dir, desc="checking images")
    inputs.unreadable = {
        i: f"{OUTSIDE_ROOT}: {paths[i]} is a link to {os.path.realpath(paths[i])}, outside {top}"
        for i, (_, _, reason) in enumerate(found)
        if reason
    }
    inputs.unreadable.update(
        {i: c.message or c.reason for i, c in zip(inside, checks, strict=True) if not c.ok}
    )
    return inputs


def _read_test_ids(test_csv: Path) -> list[str]:
    """The ids of test.csv exactly as written (strings, no NaN conversion), read like the reader reads them."""
    frame = read_csv_table(test_csv, ("id",), dtype=str, keep_default_na=False)
    return frame["id"].tolist()


def _kaggle_predict_reader(root: Path, cache_dir: Path) -> Any:
    """``KaggleReader`` limited to the test.csv rows: only the images to score are decoded and checked
    (the training images are not needed to predict)."""

    class PredictRowsReader(KaggleReader):
        def rows(self) -> list:
            return self.predict_rows()  # no train.csv needed

    return PredictRowsReader(root=root, strict=False, cache_dir=cache_dir)


def kaggle_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """The ``test.csv`` rows of a generated-or-not folder, in file order, none dropped."""
    root = Path(root).expanduser()
    test_csv = root / "test.csv"
    if not test_csv.is_file():
        raise FidBenchError(f"--root {root}: no test.csv (expected the generated-or-not layout)")
    expected = _read_test_ids(test_csv)
    if not expected:
        raise FidBenchError(f"{test_csv}: no ids to predict")
    dup = pd.Series(expected)[pd.Series(expected).duplicated()].unique().tolist()
    if dup:
        raise FidBenchError(
            f"{test_csv}: {len(dup)} id(s) listed twice, e.g. {dup[:3]}; a submission needs each id once"
        )
    samples = _kaggle_predict_reader(root, Path(cache_dir)).read()
    table = samples.table[samples.table["split"] == "predict"].reset_index(drop=True)
    ids = table["id"].astype(str).tolist()
    if ids != expected:
        raise FidBenchError(
            f"{test_csv}: the reader returned {len(ids)} prediction rows for {len(expected)} ids "
            "(or another order); refusing to write a submission that does not match test.csv"
        )
    inputs = Inputs(ids=ids, paths=table["path"].astype(str).tolist(), kind="kaggle", expected_ids=expected)
    bad = samples.unreadable_predict
    reasons = dict(zip(bad["id"].astype(str), bad["reason"].astype(str), strict=True))
    for pos, (id_, path, sha1) in enumerate(zip(ids, inputs.paths, table["sha1"].astype(str), strict=True)):
        if id_ in reasons:
            inputs.unreadable[pos] = reasons[id_]
        elif not path or not sha1:  # no file, or a file the reader could not decode
            inputs.unreadable[pos] = "unreadable"
    return inputs


def folder_inputs(root: str | Path, cache_dir: str | Path) -> Inputs:
    """Every image of a class-folder data set (``FolderReader``), ids as the reader gives them (relative
    paths); files the reader skipped stay in, as unreadable."""
    samples = FolderReader(root=Path(root).expanduser(), strict=False, cache_dir=Path(cache_dir)).read()
    good = samples.table[["id", "path"]].assign(reason="")
    bad = samples.skipped[["id", "path", "reason"]]
    rows = (
        pd.concat([good, bad], ignore_index=True).sort_values("id", kind="mergesort").reset_index(drop=True)
    )
    if rows.empty:
        raise FidBenchError(f"--root {root}: no images")
    ids = rows["id"].astype(str).tolist()
    inputs = Inputs(ids=ids, paths=rows["path"].astype(str).tolist(), kind="images", expected_ids=ids)
    inputs.unreadable = {i: str(r) for i, r in enumerate(rows["reason"]) if r}
    return inputs
