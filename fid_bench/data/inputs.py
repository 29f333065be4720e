"""Images to score with a trained model: any configured data set (``data=...``: a Kaggle ``test.csv``,
a class-folder data set, ...) read by its own reader, or any folder of images.

Nothing is dropped: an input the readers cannot use stays in, marked unreadable with its reason,
so the written file still holds every id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.data.readers import (
    IMAGE_EXTENSIONS,
    OUTSIDE_ROOT,
    image_name,
    layout_bases,
    read_configured_samples,
    walk_files,
)
from fid_bench.data.samples import Samples
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


def configured_inputs(cfg: Any) -> Inputs:
    """The images the data set of a composed config (``data=...`` overrides) offers for scoring, read
    by its own reader (``read_configured_samples(..., to_score=True)``); errors are one line."""
    return scored_inputs(read_configured_samples(cfg, to_score=True))


def scored_inputs(samples: Samples) -> Inputs:
    """What ``predict`` scores of a data set read for scoring (``ImageReader.read_to_score``).

    A data set naming its own rows to score (split "predict": Kaggle's test.csv) gives those, in its
    order, as a submission (``kind="kaggle"``); any other gives every image, ids as the reader gives
    them, files the reader skipped kept as unreadable, in id order (``kind="images"``).
    """
    table = samples.table
    predict = table[table["split"] == "predict"].reset_index(drop=True)
    if len(predict):
        ids = predict["id"].astype(str).tolist()
        inputs = Inputs(ids=ids, paths=predict["path"].astype(str).tolist(), kind="kaggle", expected_ids=ids)
        bad = samples.unreadable_predict
        reasons = dict(zip(bad["id"].astype(str), bad["reason"].astype(str), strict=True))
        for pos, (id_, path, sha1) in enumerate(
            zip(ids, inputs.paths, predict["sha1"].astype(str), strict=True)
        ):
            if id_ in reasons:
                inputs.unreadable[pos] = reasons[id_]
            elif not path or not sha1:  # no file, or a file the reader could not decode
                inputs.unreadable[pos] = "unreadable"
        return inputs
    good = table[["id", "path"]].assign(reason="")
    bad = samples.skipped[["id", "path", "reason"]]
    rows = (
        pd.concat([good, bad], ignore_index=True).sort_values("id", kind="mergesort").reset_index(drop=True)
    )
    if rows.empty:
        raise FidBenchError(f"{samples.name}: no images to score")
    ids = rows["id"].astype(str).tolist()
    inputs = Inputs(ids=ids, paths=rows["path"].astype(str).tolist(), kind="images", expected_ids=ids)
    inputs.unreadable = {i: str(r) for i, r in enumerate(rows["reason"]) if r}
    return inputs
