"""Readers: a data set on disk -> ``Samples`` (see ``samples`` for the table's columns).

Every reader lists candidate rows, resolves each to a file inside the data root, then checks every
file (sha1 + full decode, cached by ``validation``). A labelled row ("train"/"test") that cannot be
used is skipped and counted in ``Samples.skipped`` with one of these reasons, or, with
``strict=True``, stops the read with a one-line ``FidBenchError`` naming the file and the reason:

    missing_file   no file for the id, or the file is gone
    ambiguous_id   several files in images/ share the id's stem
    outside_root   the id, or a link found below the folders the layout names, leads outside both
                   the data root and that folder (the root itself, split and class folders and
                   images/ may be links to anywhere: see ``layout_bases``)
    duplicate_id   the id already appeared earlier in the same CSV with the same label, or another
                   spelling of it did (``sub/../a.jpg``, ``a`` beside ``a.jpg``: the same file; the
                   first row is kept)
    conflicting_labels   the id already appeared earlier with the other label (the first row is
                   kept; fix the CSV if it is the wrong one)
    bad_label      target not 0 or 1
    empty_file, truncated, undecodable, too_large   the file itself is broken (see ``decode``)

A "predict" row (Kaggle test.csv) is never dropped, in strict mode too: it stays in the table with
``sha1=""`` (and ``path=""`` when no file could be resolved) and is listed in
``Samples.unreadable_predict``. Rows come in a fixed order: split (train, test, predict), then id for
labelled rows, while predict rows keep the order of their source file (test.csv), so a submission
can follow it. Ids are kept verbatim (they are written back in submissions); surrounding spaces are
ignored only when looking for the file.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fid_bench.data.csv_table import read_csv_table
from fid_bench.data.decode import MISSING_FILE, set_max_pixels
from fid_bench.data.demo import ensure_demo
from fid_bench.data.samples import LABELLED_SPLITS, SAMPLE_COLUMNS, SKIP_COLUMNS, Samples
from fid_bench.data.validation import validate_files
from fid_bench.errors import FidBenchError, one_line

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic"}
)


def image_name(name: str) -> bool:
    """The one rule for which files below a class folder (and ``predict --images``) are images to
    read: a known image suffix, any case, or no suffix at all (scraped sets often drop it); the
    decoder then decides. Notes, CSVs and other files are left out, and counted where they are."""
    suffix = os.path.splitext(name)[1]
    return suffix == "" or suffix.lower() in IMAGE_EXTENSIONS


OUTSIDE_ROOT = "outside_root"
AMBIGUOUS_ID = "ambiguous_id"
DUPLICATE_ID = "duplicate_id"
CONFLICTING_LABELS = "conflicting_labels"
BAD_LABEL = "bad_label"

#: class folder names (compared lower-cased) -> label
CLASS_FOLDERS = {"real": 0, "fake": 1, "0": 0, "1": 1}
SPLIT_FOLDERS = ("train", "test")
_SPLIT_ORDER = {"train": 0, "test": 1, "predict": 2}


@dataclass
class _Row:
    id: str
    label: int
    split: str
    order: int  # position in the source listing: breaks ties between duplicate ids
    path: str = ""  # where the file is (or was looked for); kept in the table only when ``resolved``
    resolved: bool = False
    group: str = ""
    sha1: str = ""
    reason: str = ""
    message: str = ""

    def fail(self, reason: str, message: str) -> _Row:
        self.reason, self.message = reason, message
        return self


class ImageReader(ABC):
    """Common part of all readers: check files, split good rows from bad ones, build ``Samples``."""

    #: default data set name (``Samples.name``)
    name = "data"

    def __init__(
        self,
        root: str | Path,
        *,
        strict: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        name: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.strict = bool(strict)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.workers = workers
        if name:
            self.name = name

    @abstractmethod
    def rows(self) -> list[_Row]:
        """Candidate rows with resolved paths, or with a reason when they cannot be used."""

    def read(self, *, max_per_class: int | None = None, seed: int = 0) -> Samples:
        """The samples table. ``max_per_class``: keep at most that many labelled rows per class, drawn
        at random (``seed``) before any file is checked, so a cap on a large set also saves its reading."""
        return self._read_rows(self.rows(), max_per_class=max_per_class, seed=seed)

    def _read_rows(
        self, candidates: list[_Row], *, max_per_class: int | None = None, seed: int = 0
    ) -> Samples:
        # labelled rows by id; predict rows keep their source order (a submission follows test.csv)
        rows = sorted(
            candidates, key=lambda r: (_SPLIT_ORDER[r.split], "" if r.split == "predict" else r.id, r.order)
        )
        if max_per_class is not None:
            rows = _cap_per_class(rows, int(max_per_class), seed)
        if self.strict:
            self._raise_first_bad(rows)  # before decoding anything: fail fast
        todo = [r for r in rows if not r.reason]
        checks = validate_files(
            [r.path for r in todo],
            cache_dir=self.cache_dir,
            workers=self.workers,
            desc=f"{self.name}: images",
        )
        for row, check in zip(todo, checks, strict=True):
            if check.ok:
                row.sha1 = check.sha1
            else:
                row.fail(check.reason, check.message)
        if self.strict:
            self._raise_first_bad(rows)
        kept = [r for r in rows if not r.reason or r.split == "predict"]
        skipped = [r for r in rows if r.reason and r.split != "predict"]
        unreadable = [r for r in rows if r.reason and r.split == "predict"]
        self._report(rows, skipped, unreadable)
        table = pd.DataFrame(
            {
                "id": [r.id for r in kept],
                "path": [r.path if r.resolved else "" for r in kept],
                "label": pd.Series([r.label for r in kept], dtype="int64"),
                "split": [r.split for r in kept],
                "group": [r.group for r in kept],
                "sha1": [r.sha1 if not r.reason else "" for r in kept],
            },
            columns=SAMPLE_COLUMNS,
        )
        return Samples(
            table=table,
            skipped=_skip_frame(skipped),
            name=self.name,
            unreadable_predict=_skip_frame(unreadable),
        )

    def read_to_score(self) -> Samples:
        """The rows ``predict`` scores when it reads this data set: all of them (a reader whose data set
        names its own rows to score, as Kaggle's test.csv does, returns those as split "predict")."""
        return self.read()

    def _raise_first_bad(self, rows: list[_Row]) -> None:
        for row in rows:
            if row.reason and row.split in LABELLED_SPLITS:
                raise FidBenchError(
                    f"{row.split} row {row.id!r}: {row.reason}: {row.message} "
                    "(strict mode; with data.strict=false such rows are skipped and counted)"
                )

    def _report(self, rows: list[_Row], skipped: list[_Row], unreadable: list[_Row]) -> None:
        for row in skipped + unreadable:
            log.debug("%s row %r: %s: %s", row.split, row.id, row.reason, row.message)
        if skipped:
            n_labelled = sum(r.split != "predict" for r in rows)
            # debug only: the run (``TrackedRun.log_samples``) says it once, with skipped.csv
            log.debug(
                "%s: skipped %d of %d labelled rows (%s); listed in Samples.skipped",
                self.name,
                len(skipped),
                n_labelled,
                _count_reasons(skipped),
            )
        if unreadable:
            n_predict = sum(r.split == "predict" for r in rows)
            log.warning(
                "%s: %d of %d predict rows have no readable image (%s); kept with sha1='' and listed in "
                "Samples.unreadable_predict",
                self.name,
                len(unreadable),
                n_predict,
                _count_reasons(unreadable),
            )

    def _check_root(self) -> Path:
        if not self.root.exists():
            raise FidBenchError(f"data root {self.root} does not exist (set data.root)")
        if not self.root.is_dir():
            raise FidBenchError(f"data root {self.root} is not a folder")
        return self.root


class KaggleReader(ImageReader):
    """Kaggle "generated-or-not" layout: root/train.csv (id,target), root/test.csv (id), root/images/.

    An id names a file in images/: the exact name if it exists, else the single image file whose stem
    is the id (ids without extension) or the id's stem (extension differs). An optional ``group``
    column in train.csv fills the table's ``group``. A missing test.csv just means no predict rows.
    """

    name = "generated-or-not"

    def __init__(
        self,
        root: str | Path,
        *,
        strict: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        name: str | None = None,
        images_dir: str = "images",
        train_csv: str = "train.csv",
        test_csv: str = "test.csv",
    ) -> None:
        super().__init__(root, strict=strict, cache_dir=cache_dir, workers=workers, name=name)
        self.images_dir, self.train_csv, self.test_csv = images_dir, train_csv, test_csv

    def rows(self) -> list[_Row]:
        root = self._check_root()
        train_file = root / self.train_csv
        if not train_file.is_file():
            raise FidBenchError(
                f"{train_file} not found: data=kaggle expects root/{self.train_csv} (id,target), "
                f"root/{self.test_csv} (id) and root/{self.images_dir}/"
            )
        resolver = self._resolver(root)
        return self._labelled_rows(train_file, resolver) + self.predict_rows(resolver)

    def read_to_score(self) -> Samples:
        """Only the test.csv rows, in file order, each id once (a submission names each id once): the
        training images are neither needed nor decoded, and train.csv may be absent."""
        test_csv = self._check_root() / self.test_csv
        if not test_csv.is_file():
            raise FidBenchError(f"{self.root}: no {self.test_csv} (expected the generated-or-not layout)")
        expected = read_csv_table(test_csv, ("id",), dtype=str, keep_default_na=False)["id"].tolist()
        if not expected:
            raise FidBenchError(f"{test_csv}: no ids to predict")
        ids = pd.Series(expected)
        dup = ids[ids.duplicated()].unique().tolist()
        if dup:
            raise FidBenchError(
                f"{test_csv}: {len(dup)} id(s) listed twice, e.g. {dup[:3]}; a submission needs each id once"
            )
        samples = self._read_rows(self.predict_rows())
        got = samples.table.loc[samples.table["split"] == "predict", "id"].astype(str).tolist()
        if got != expected:
            raise FidBenchError(
                f"{test_csv}: the reader returned {len(got)} prediction rows for {len(expected)} ids "
                "(or another order); refusing to write a submission that does not match test.csv"
            )
        return samples

    def _resolver(self, root: Path) -> _IdResolver:
        images = root / self.images_dir
        if not images.is_dir():
            raise FidBenchError(
                f"{images} not found: data=kaggle expects the image files in root/{self.images_dir}/"
            )
        return _IdResolver(images, root)

    def _labelled_rows(self, train_file: Path, resolver: _IdResolver) -> list[_Row]:
        rows: list[_Row] = []
        train = _read_csv(train_file, ("id", "target"))
        has_group = "group" in train.columns
        first: dict[str, _Row] = {}  # id -> its first row
        by_file: dict[str, _Row] = {}  # resolved file -> the first row naming it
        for order, rec in enumerate(train.to_dict("records")):
            row = _Row(id=rec["id"], label=-1, split="train", order=order)
            row.group = rec["group"] if has_group else ""
            rows.append(row)
            key = row.id.strip()
            label = _parse_label(rec["target"])
            if key in first:
                earlier, line = first[key], f"{self.train_csv} line {order + 2}"
                if label is not None and earlier.label >= 0 and label != earlier.label:
                    row.fail(
                        CONFLICTING_LABELS,
                        f"{line}: id {row.id!r} has target {label} here but {earlier.label} above "
                        "(the first row is kept)",
                    )
                else:
                    row.fail(DUPLICATE_ID, f"{line}: id {row.id!r} already listed above")
                continue
            first[key] = row
            if label is None:
                row.fail(
                    BAD_LABEL, f"{self.train_csv} line {order + 2}: target {rec['target']!r} is not 0 or 1"
                )
                continue
            row.label = label
            resolver.resolve(row)
            if row.resolved and not row.reason:
                # another spelling of an id above (``sub/../a.jpg``, ``a`` beside ``a.jpg``): the same file
                real = os.path.realpath(row.path)
                alias = by_file.get(real)
                if alias is None:
                    by_file[real] = row
                    continue
                line = f"{self.train_csv} line {order + 2}: id {row.id!r} names the same file as id {alias.id!r} above"
                if label != alias.label:
                    row.fail(
                        CONFLICTING_LABELS,
                        f"{line}, with target {label} here but {alias.label} there (the first row is kept)",
                    )
                else:
                    row.fail(DUPLICATE_ID, line)
        return rows

    def predict_rows(self, resolver: _IdResolver | None = None) -> list[_Row]:
        """The unlabelled rows of test.csv, in file order (none when there is no test.csv); all that
        ``predict`` reads of the data set (``read_to_score``), so it needs no train.csv."""
        root = self._check_root()
        resolver = resolver or self._resolver(root)
        test_file = root / self.test_csv
        rows: list[_Row] = []
        if test_file.is_file():
            test = _read_csv(test_file, ("id",))
            named: dict[str, str] = {}  # resolved file -> the first id naming it
            aliases: list[tuple[str, str]] = []
            for order, rec in enumerate(test.to_dict("records")):
                row = resolver.resolve(_Row(id=rec["id"], label=-1, split="predict", order=order))
                rows.append(row)
                if row.resolved and not row.reason:
                    first = named.setdefault(os.path.realpath(row.path), row.id)
                    if first != row.id:
                        aliases.append((row.id, first))
            n_dup = len(test) - test["id"].nunique()
            if n_dup:
                log.warning("%s: %d ids repeat in %s; every row is kept", self.name, n_dup, self.test_csv)
            if aliases:
                log.warning(
                    "%s: %d ids of %s name a file an earlier id names (e.g. %r = %r); every row is kept",
                    self.name,
                    len(aliases),
                    self.test_csv,
                    *aliases[0],
                )
        else:
            log.info("%s: no %s, so no predict rows", self.name, test_file)
        return rows


class FolderReader(ImageReader):
    """Class folders: root/{train,test}/{REAL,FAKE}/ (CIFAKE; split from the folder) or root/{real,fake}/
    (split "train"). Folder names are matched case-insensitively (real/fake or 0/1); images may sit in
    sub-folders of a class folder. Ids are paths relative to root. Hidden files and folders are ignored.
    """

    name = "folder"

    def rows(self) -> list[_Row]:
        root = self._check_root()
        root_real = os.path.realpath(root)
        top = _subfolders(root)
        splits = [d for d in top if d.lower() in SPLIT_FOLDERS]
        if splits:
            others = [d for d in top if d.lower() not in SPLIT_FOLDERS]
            if others:
                raise FidBenchError(
                    f"{root}: folder {others[0]!r} is not a split folder; expected only "
                    f"{'/'.join(SPLIT_FOLDERS)} next to {splits[0]!r}"
                )
            parts = [(root / d, d.lower()) for d in splits]
        else:
            parts = [(root, "train")]
        rows: list[_Row] = []
        prefix = str(root) + os.sep
        for folder, split in parts:
            _warn_loose_images(folder)
            for class_dir, label in _class_folders(folder):
                top = folder / class_dir
                found = walk_files(str(top), layout_bases(root_real, top))
                others = [path for path, _ in found if not image_name(os.path.basename(path))]
                if others:
                    log.warning(
                        "%s: %d files not named like images are ignored (e.g. %s)",
                        top,
                        len(others),
                        _relative_id(sorted(others)[0], prefix),
                    )
                for path, reason in found:
                    if not image_name(os.path.basename(path)):
                        continue
                    row = _Row(
                        id=_relative_id(path, prefix),
                        label=label,
                        split=split,
                        order=len(rows),
                        path=path,
                        resolved=not reason,
                    )
                    if reason:
                        row.fail(
                            reason, f"{path} is a link to {os.path.realpath(path)}, outside {root} and {top}"
                        )
                    rows.append(row)
        return rows


class DemoReader(KaggleReader):
    """The offline demo set (``demo.ensure_demo``): generated into ``root`` on first use, then read as
    a Kaggle-like layout: labelled rows in split "train" (with ``group`` = generator name, "" for real)
    and ``n_predict`` unlabelled rows in split "predict". No labelled "test" split: make_folds draws one.
    """

    name = "demo"

    def __init__(
        self,
        root: str | Path,
        *,
        n_real: int = 300,
        n_fake: int = 100,
        n_predict: int = 20,
        size: int = 64,
        seed: int = 0,
        confound: str | None = None,
        difficulty: str = "hard",
        strict: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(root, strict=strict, cache_dir=cache_dir, workers=workers, name=name)
        self.params = {
            "difficulty": difficulty,
            "n_real": n_real,
            "n_fake": n_fake,
            "n_predict": n_predict,
            "size": size,
            "seed": seed,
            "confound": confound,
        }

    def rows(self) -> list[_Row]:
        ensure_demo(self.root, **self.params)
        return super().rows()

    def read_to_score(self) -> Samples:
        ensure_demo(self.root, **self.params)
        return super().read_to_score()


class _IdResolver:
    """Maps Kaggle ids to files in images/: exact name first, else the single file with that stem."""

    def __init__(self, images: Path, root: Path) -> None:
        self.images = os.path.abspath(images)
        self.bases = layout_bases(root, images)
        self._listings: dict[str, tuple[frozenset[str], dict[str, list[str]]]] = {}

    def resolve(self, row: _Row) -> _Row:
        image_id = row.id.strip()
        if not image_id:
            return row.fail(MISSING_FILE, "empty id")
        rel = image_id.replace("\\", "/")
        if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
            return row.fail(
                OUTSIDE_ROOT, f"id {image_id!r} is an absolute path; ids name files in {self.images}"
            )
        candidate = os.path.normpath(os.path.join(self.images, rel))
        row.path = candidate
        if not _inside(candidate, self.images):
            return row.fail(OUTSIDE_ROOT, f"id {image_id!r} points to {candidate}, outside {self.images}")
        folder, name = os.path.split(candidate)
        names, stems = self._listing(folder)
        if name not in names:
            keys = {name}
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                keys.add(stem)
            matches = sorted({m for k in keys for m in stems.get(k, ())})
            if not matches:
                return row.fail(MISSING_FILE, f"no file in {folder} matches id {image_id!r}")
            if len(matches) > 1:
                shown = ", ".join(matches[:4]) + (", ..." if len(matches) > 4 else "")
                return row.fail(
                    AMBIGUOUS_ID, f"id {image_id!r} matches {len(matches)} files in {folder}: {shown}"
                )
            name = matches[0]
        row.path = os.path.join(folder, name)
        real = os.path.realpath(row.path)
        if not inside_bases(real, self.bases):
            return row.fail(
                OUTSIDE_ROOT, f"{row.path} is a link to {real}, outside the data root and images/"
            )
        row.resolved = True
        return row

    def _listing(self, folder: str) -> tuple[frozenset[str], dict[str, list[str]]]:
        if folder not in self._listings:
            try:
                with os.scandir(folder) as it:
                    names = frozenset(e.name for e in it if not e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                names = frozenset()
            except OSError as err:
                raise FidBenchError(f"{folder}: cannot list folder ({err.strerror})") from None
            stems: dict[str, list[str]] = {}
            for n in names:
                stem, ext = os.path.splitext(n)
                if ext.lower() in IMAGE_EXTENSIONS:
                    stems.setdefault(stem, []).append(n)
            self._listings[folder] = (names, stems)
        return self._listings[folder]


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    return read_csv_table(path, required, dtype=str, keep_default_na=False)


def _parse_label(value: str) -> int | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def layout_bases(root: str | Path, folder: str | Path) -> tuple[str, ...]:
    """Where files found below ``folder`` may resolve to: the resolved data root or the resolved
    ``folder`` (a folder the layout names: a class folder, a split folder, Kaggle's images/).

    The symlink rule: the data root and the folders the layout names may be links to anywhere
    (e.g. images/ on another disk); files and folders found below them may not lead elsewhere.
    """
    return tuple(dict.fromkeys((os.path.realpath(root), os.path.realpath(folder))))


def inside_bases(real: str, bases: tuple[str, ...]) -> bool:
    return any(_inside(real, base) for base in bases)


def _inside(path: str, base: str) -> bool:
    """``path`` is strictly below ``base`` (both absolute and normalised)."""
    return path.startswith(base.rstrip(os.sep) + os.sep)


def _subfolders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError as err:
        raise FidBenchError(f"{folder}: cannot list folder ({err.strerror})") from None


def _class_folders(folder: Path) -> list[tuple[str, int]]:
    names = _subfolders(folder)
    if not names:
        raise FidBenchError(f"{folder}: no class folders (expected real/fake or 0/1 sub-folders)")
    out = []
    for name in names:
        label = CLASS_FOLDERS.get(name.lower())
        if label is None:
            raise FidBenchError(
                f"{folder}: unknown class folder {name!r} (expected real/fake or 0/1, in any letter case)"
            )
        out.append((name, label))
    return out


def _warn_loose_images(folder: Path) -> None:
    """Images next to the class folders have no label: say so instead of dropping them silently."""
    with os.scandir(folder) as it:
        loose = [
            e.name for e in it if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        ]
    if loose:
        log.warning(
            "%s: %d image files sit outside any class folder and are ignored (e.g. %s)",
            folder,
            len(loose),
            sorted(loose)[0],
        )


def walk_files(top: str, bases: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every non-hidden file below ``top`` as (path, reason); reason is ``outside_root`` for links that
    resolve outside every one of ``bases`` (resolved folders). Links to folders inside them are
    followed once each. ``top`` itself may be a link: the symlink rule (see ``inside_bases``)."""
    out: list[tuple[str, str]] = []
    stack, visited = [top], {os.path.realpath(top)}
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise FidBenchError(f"{folder}: cannot list folder ({err.strerror})") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not inside_bases(os.path.realpath(entry.path), bases):
                out.append((entry.path, OUTSIDE_ROOT))
            elif entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in visited:
                    visited.add(real)
                    stack.append(entry.path)
            else:
                out.append((entry.path, ""))
    return out


def _relative_id(path: str, prefix: str) -> str:
    # plain string slicing: os.path.relpath costs more than the rest of a warm 120k-file read
    rel = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, prefix)
    return rel.replace(os.sep, "/")


def _cap_per_class(rows: list[_Row], cap: int, seed: int) -> list[_Row]:
    """At most ``cap`` labelled rows of each class (a seeded random draw, order kept); rows the listing
    already marked bad and predict rows are kept, so they are still counted and scored."""
    import numpy as np

    if cap < 1:
        raise FidBenchError(f"max_per_class must be a positive whole number, got {cap}")
    rng = np.random.default_rng(seed)
    drop: set[int] = set()
    for label in (0, 1):
        pos = [i for i, r in enumerate(rows) if r.split != "predict" and r.label == label and not r.reason]
        if len(pos) > cap:
            keep = set(rng.choice(len(pos), size=cap, replace=False).tolist())
            drop.update(p for j, p in enumerate(pos) if j not in keep)
    return [r for i, r in enumerate(rows) if i not in drop]


def _count_reasons(rows: list[_Row]) -> str:
    counts = Counter(r.reason for r in rows)
    return ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))


def _skip_frame(rows: list[_Row]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.id for r in rows],
            "path": [r.path for r in rows],
            "split": [r.split for r in rows],
            "reason": [r.reason for r in rows],
        },
        columns=SKIP_COLUMNS,
    )


def read_samples(data_cfg: Any, *, to_score: bool = False) -> Samples:
    """Read the data set a composed config's ``data`` node describes (its ``reader`` is instantiated).

    Bad rows are counted in ``Samples.skipped``; config errors (a missing ``data.root``, an
    unknown reader) propagate as Hydra/OmegaConf exceptions for the caller to word. Also sets
    ``data.max_pixels`` for every later decode of the process (extraction, fine-tuning, the audit).
    ``to_score``: the rows ``predict`` scores (``read_to_score``; a reader without it: every row).
    """
    from hydra.utils import instantiate

    set_max_pixels(data_cfg.get("max_pixels"))
    reader = instantiate(data_cfg.reader)
    return getattr(reader, "read_to_score", reader.read)() if to_score else reader.read()


def read_configured_samples(cfg: Any, *, to_score: bool = False) -> Samples:
    """``read_samples(cfg.data)`` for a command: config and reader errors become one ``FidBenchError`` line."""
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        return read_samples(cfg.data, to_score=to_score)
    except MissingMandatoryValue as err:
        key = str(getattr(err, "full_key", "") or "a value")
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("data.reader.") and OmegaConf.is_missing(cfg.data, leaf):
            key = f"data.{leaf}"  # the reader's fields interpolate data.*: name what the user sets
        raise FidBenchError(f"config: {key} is required (e.g. {key}=/path/to/data)") from None
    except (InstantiationException, OmegaConfBaseException) as err:
        cause: BaseException | None = err
        while cause is not None:  # Hydra wraps the reader's own one-line errors
            if isinstance(cause, FidBenchError):
                raise FidBenchError(str(cause)) from None
            cause = cause.__cause__
        raise FidBenchError(f"data reader: {one_line(err)}") from None
