"""Readers: Kaggle and folder layouts, id resolution, exact skip reasons, strict mode, predict rows,
the validation cache, and a small subset of the real CIFAKE archive."""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from fid_bench.data import validation
from fid_bench.data.readers import FolderReader, KaggleReader
from fid_bench.data.samples import SAMPLE_COLUMNS, SKIP_COLUMNS
from fid_bench.errors import FidBenchError
from tests.conftest import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
CIFAKE_ARCHIVE = REPO / ".." / "shared" / "data" / "cifake.tar.gz"


def make_reader(kind: str, root: Path, cache_dir: Path | None, *overrides: str):
    """Build a reader the way a job does: compose the Hydra config, instantiate ``data.reader``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"data={kind}", f"data.root={root}", f"features.cache_dir={cache_dir}", *overrides],
        )
    reader = instantiate(cfg.data.reader)
    if cache_dir is None:
        reader.cache_dir = None
    return reader


_colour = iter(range(1, 10_000))


def image(path: Path, fmt: str | None = None) -> Path:
    """A tiny image with its own colour (so every file has its own sha1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c = next(_colour)
    Image.new("RGB", (8, 8), (c % 256, (c * 7) % 256, (c * 13) % 256)).save(path, format=fmt)
    return path


def truncated(path: Path, fmt: str = "JPEG") -> Path:
    """The first half of a noisy image: the header is fine, the pixel data stops early."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def write_csv(path: Path, header: str, rows: list[tuple]) -> None:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


@pytest.fixture
def kaggle(tmp_path: Path) -> Path:
    root = tmp_path / "gen"
    img = root / "images"
    image(img / "a.png")  # id without extension
    image(img / "b.png")  # id "b.jpg": extension differs
    image(img / "c.png")  # exact name
    image(img / "d.jpeg", "JPEG")
    image(img / "e.webp", "WEBP")
    image(img / "f.gif", "GIF")
    image(img / "g.bmp", "BMP")
    image(img / "h.tiff", "TIFF")  # id "h.tif"
    image(img / "x.y.png")  # id "x.y": a dot, but no extension
    image(img / "amb.png")
    image(img / "amb.jpg", "JPEG")
    image(img / "bad2.png")
    image(root / "escape.png")  # exists, but outside images/
    image(tmp_path / "outside" / "secret.png")
    (img / "link.png").symlink_to(tmp_path / "outside" / "secret.png")
    truncated(img / "trunc.jpg")
    (img / "empty.png").write_bytes(b"")
    (img / "junk.png").write_text("not an image")
    image(img / "notes.txt.png")  # unrelated file: must not disturb resolution
    write_csv(
        root / "train.csv",
        "id,target",
        [
            ("a", 1),
            ("b.jpg", 0),
            ("c.png", 1),
            ("d", 0),
            ("e", 1),
            ("f", 0),
            ("g", 1),
            ("h.tif", 0),
            ("x.y", "1.0"),
            ("amb", 0),
            ("ghost", 1),
            ("../escape", 0),
            ("/etc/passwd", 0),
            ("link", 1),
            ("c.png", 0),  # duplicate id, other label
            ("bad2", 2),
            ("badtxt", "yes"),
            ("badempty", ""),
            ("trunc", 1),
            ("empty", 0),
            ("junk", 1),
        ],
    )
    image(img / "p1.png")
    image(img / "p2.jpg", "JPEG")
    truncated(img / "p_trunc.png", "PNG")
    image(img / "p_amb.png")
    image(img / "p_amb.webp", "WEBP")
    write_csv(
        root / "test.csv", "id", [("p2",), ("p_missing",), ("p1",), ("p_trunc",), ("p_amb",), ("../a",)]
    )
    return root


TRAIN_OK = {
    "a": ("a.png", 1),
    "b.jpg": ("b.png", 0),
    "c.png": ("c.png", 1),
    "d": ("d.jpeg", 0),
    "e": ("e.webp", 1),
    "f": ("f.gif", 0),
    "g": ("g.bmp", 1),
    "h.tif": ("h.tiff", 0),
    "x.y": ("x.y.png", 1),
}
TRAIN_SKIPPED = {
    ("../escape", "outside_root"),
    ("/etc/passwd", "outside_root"),
    ("amb", "ambiguous_id"),
    ("bad2", "bad_label"),
    ("badempty", "bad_label"),
    ("badtxt", "bad_label"),
    ("c.png", "conflicting_labels"),
    ("empty", "empty_file"),
    ("ghost", "missing_file"),
    ("junk", "undecodable"),
    ("link", "outside_root"),
    ("trunc", "truncated"),
}


def test_kaggle_layout(kaggle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fid_bench.data.readers")
    samples = make_reader("kaggle", kaggle, tmp_path / "cache").read()
    table = samples.table
    assert list(table.columns) == SAMPLE_COLUMNS and list(samples.skipped.columns) == SKIP_COLUMNS
    assert samples.name == "generated-or-not"

    train = table[table["split"] == "train"]
    assert train["id"].tolist() == sorted(TRAIN_OK)  # sorted, only usable rows
    for row in train.itertuples():
        name, label = TRAIN_OK[row.id]
        assert row.path == str(kaggle / "images" / name)
        assert row.label == label
        assert row.sha1 == sha1(kaggle / "images" / name)
        assert row.group == ""
    assert table["label"].dtype == np.int64

    skipped = set(zip(samples.skipped["id"], samples.skipped["reason"], strict=True))
    assert skipped == TRAIN_SKIPPED
    assert set(samples.skipped["split"]) == {"train"}
    assert len(train) + len(samples.skipped) == 21  # every train.csv row accounted for
    by_id = samples.skipped.set_index("reason")
    assert by_id.loc["truncated", "path"] == str(kaggle / "images" / "trunc.jpg")
    assert by_id.loc["bad_label", "path"].tolist() == ["", "", ""]

    # predict rows: never dropped, test.csv order, unreadable ones flagged
    pred = table[table["split"] == "predict"].set_index("id")
    assert pred.index.tolist() == ["p2", "p_missing", "p1", "p_trunc", "p_amb", "../a"]
    assert (pred["label"] == -1).all()
    assert pred.loc["p1", "sha1"] == sha1(kaggle / "images" / "p1.png")
    assert pred.loc["p2", "path"] == str(kaggle / "images" / "p2.jpg")
    assert (pred.loc["p_missing", "path"], pred.loc["p_missing", "sha1"]) == ("", "")
    assert (pred.loc["p_amb", "path"], pred.loc["p_amb", "sha1"]) == ("", "")
    assert (pred.loc["../a", "path"], pred.loc["../a", "sha1"]) == ("", "")
    # resolved but broken: the path stays, the hash says "unreadable"
    assert (pred.loc["p_trunc", "path"], pred.loc["p_trunc", "sha1"]) == (
        str(kaggle / "images" / "p_trunc.png"),
        "",
    )
    bad = dict(zip(samples.unreadable_predict["id"], samples.unreadable_predict["reason"], strict=True))
    assert bad == {
        "p_missing": "missing_file",
        "p_trunc": "truncated",
        "p_amb": "ambiguous_id",
        "../a": "outside_root",
    }

    # one line per kind, with counts per reason; the skipped rows at debug level only, because the
    # run that reads them states them once (TrackedRun.log_samples), with skipped.csv
    summaries = [
        r for r in caplog.records if "labelled rows" in r.getMessage() or "predict rows" in r.getMessage()
    ]
    assert len(summaries) == 2 and all("\n" not in r.getMessage() for r in summaries)
    assert (
        summaries[0].levelno == logging.DEBUG
        and "skipped 12 of 21 labelled rows" in summaries[0].getMessage()
    )
    assert (
        "ambiguous_id=1, bad_label=3, conflicting_labels=1, empty_file=1, missing_file=1, outside_root=3, "
        "truncated=1, undecodable=1" in summaries[0].getMessage()
    )
    assert summaries[1].levelno == logging.WARNING and "4 of 6 predict rows" in summaries[1].getMessage()


def test_strict_mode_one_line_errors(kaggle: Path, tmp_path: Path) -> None:
    # the first bad row in id order is "../escape"; it is reported before anything is decoded
    with pytest.raises(FidBenchError) as err:
        make_reader("kaggle", kaggle, None, "data.strict=true").read()
    message = str(err.value)
    assert "\n" not in message
    assert "'../escape'" in message and "outside_root" in message

    # a broken file: the message names the file and the reason
    root = tmp_path / "strict"
    image(root / "images" / "ok.png")
    truncated(root / "images" / "broken.jpg")
    write_csv(root / "train.csv", "id,target", [("ok", 0), ("broken", 1)])
    with pytest.raises(FidBenchError) as err:
        KaggleReader(root, strict=True).read()
    message = str(err.value)
    assert "\n" not in message
    assert str(root / "images" / "broken.jpg") in message and "truncated" in message

    # predict rows never stop a strict read
    write_csv(root / "train.csv", "id,target", [("ok", 0)])
    write_csv(root / "test.csv", "id", [("gone",), ("broken",)])
    samples = KaggleReader(root, strict=True).read()
    assert samples.table["id"].tolist() == ["ok", "gone", "broken"]
    assert samples.unreadable_predict["reason"].tolist() == ["missing_file", "truncated"]
    assert len(samples.skipped) == 0


def test_kaggle_missing_pieces(tmp_path: Path) -> None:
    root = tmp_path / "k"
    with pytest.raises(FidBenchError, match="does not exist"):
        KaggleReader(root).read()
    (root / "images").mkdir(parents=True)
    with pytest.raises(FidBenchError, match=r"train\.csv not found"):
        KaggleReader(root).read()
    (root / "train.csv").write_text("id,label\na,1\n")
    with pytest.raises(FidBenchError, match="missing column 'target'") as err:
        KaggleReader(root).read()
    assert "\n" not in str(err.value)
    (root / "train.csv").write_text("")
    with pytest.raises(FidBenchError, match="not a readable CSV"):
        KaggleReader(root).read()
    (root / "images").rmdir()
    (root / "train.csv").write_text("id,target\na,1\n")
    with pytest.raises(FidBenchError, match="images"):
        KaggleReader(root).read()


def test_kaggle_ids_verbatim_group_column_and_no_test_csv(tmp_path: Path) -> None:
    root = tmp_path / "k"
    image(root / "images" / "007.png")
    image(root / "images" / "b.png")
    (root / "train.csv").write_text("id,target,group\n007,1,sdxl\n b ,0,\n")
    samples = KaggleReader(root).read()
    table = samples.table
    assert table["id"].tolist() == [" b ", "007"]  # leading zeros and spaces kept (ids go back verbatim)
    assert table["group"].tolist() == ["", "sdxl"]
    assert set(table["split"]) == {"train"}


def test_validation_cache(kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_check = validation.check_image

    def counting(path):
        calls.append(os.path.basename(path))
        return real_check(path)

    monkeypatch.setattr(validation, "check_image", counting)
    cache = tmp_path / "cache"
    first = KaggleReader(kaggle, cache_dir=cache).read()
    # every resolved, non-empty file is decoded once (an empty file fails on its size alone):
    # 9 usable train files, trunc + junk, and p1, p2, p_trunc
    assert len(calls) == 14
    assert (cache / validation.CACHE_FILE).is_file()

    calls.clear()
    second = KaggleReader(kaggle, cache_dir=cache).read()
    # good files come from the cache; broken ones are checked again (failures are not cached)
    assert sorted(calls) == ["junk.png", "p_trunc.png", "trunc.jpg"]
    assert second.table.equals(first.table)
    assert second.skipped.equals(first.skipped)

    # a changed file is decoded again and its new state wins
    calls.clear()
    target = kaggle / "images" / "a.png"
    truncated(target)
    os.utime(target, ns=(1, 1))
    third = KaggleReader(kaggle, cache_dir=cache).read()
    assert "a.png" in calls
    assert ("a", "truncated") in set(zip(third.skipped["id"], third.skipped["reason"], strict=True))


def test_folder_cifake_layout(tmp_path: Path) -> None:
    root = tmp_path / "cifake"
    image(root / "train" / "REAL" / "0001.jpg", "JPEG")
    image(root / "train" / "REAL" / "0002.jpg", "JPEG")
    image(root / "train" / "FAKE" / "0001.jpg", "JPEG")
    image(root / "train" / "FAKE" / "more" / "0003.png")  # sub-folders are read too
    truncated(root / "train" / "FAKE" / "0009.jpg")
    (root / "train" / "REAL" / ".DS_Store").write_text("hidden files are not images")
    image(root / "test" / "REAL" / "0001.jpg", "JPEG")
    image(root / "test" / "FAKE" / "0001.jpg", "JPEG")
    image(tmp_path / "elsewhere.png")
    (root / "test" / "FAKE" / "0002.png").symlink_to(tmp_path / "elsewhere.png")
    samples = make_reader("folder", root, tmp_path / "cache").read()
    table = samples.table
    assert samples.name == "folder"
    assert list(zip(table["id"], table["label"], table["split"], strict=True)) == [
        ("train/FAKE/0001.jpg", 1, "train"),
        ("train/FAKE/more/0003.png", 1, "train"),
        ("train/REAL/0001.jpg", 0, "train"),
        ("train/REAL/0002.jpg", 0, "train"),
        ("test/FAKE/0001.jpg", 1, "test"),
        ("test/REAL/0001.jpg", 0, "test"),
    ]
    assert table["path"].tolist() == [str(root / i) for i in table["id"]]
    assert table["sha1"].tolist() == [sha1(root / i) for i in table["id"]]
    assert set(
        zip(samples.skipped["id"], samples.skipped["reason"], samples.skipped["split"], strict=True)
    ) == {
        ("train/FAKE/0009.jpg", "truncated", "train"),
        ("test/FAKE/0002.png", "outside_root", "test"),
    }


@pytest.mark.parametrize("names", [("Real", "FAKE"), ("0", "1"), ("real", "fake")])
def test_folder_plain_classes(tmp_path: Path, names: tuple[str, str]) -> None:
    root = tmp_path / "plain"
    for k in range(3):
        image(root / names[0] / f"r{k}.png")
    for k in range(2):
        image(root / names[1] / f"f{k}.webp", "WEBP")
    image(root / "loose.png")  # next to the class folders: not a sample
    samples = FolderReader(root).read()
    table = samples.table
    assert set(table["split"]) == {"train"}
    assert table.groupby("label").size().to_dict() == {0: 3, 1: 2}
    assert table["id"].tolist() == sorted(table["id"])
    assert all(
        i.startswith(f"{names[0]}/") == (lab == 0) for i, lab in zip(table["id"], table["label"], strict=True)
    )
    assert len(samples.skipped) == 0


def test_folder_layout_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "bad"
    image(root / "real" / "a.png")
    image(root / "cats" / "b.png")
    with pytest.raises(FidBenchError, match="unknown class folder 'cats'") as err:
        FolderReader(root).read()
    assert "\n" not in str(err.value)

    mixed = tmp_path / "mixed"
    image(mixed / "train" / "real" / "a.png")
    image(mixed / "fake" / "b.png")
    with pytest.raises(FidBenchError, match="'fake' is not a split folder"):
        FolderReader(mixed).read()

    split_unknown = tmp_path / "su"
    image(split_unknown / "train" / "REAL" / "a.png")
    image(split_unknown / "train" / "maybe" / "b.png")
    with pytest.raises(FidBenchError, match="unknown class folder 'maybe'"):
        FolderReader(split_unknown).read()

    with pytest.raises(FidBenchError, match="no class folders"):
        (tmp_path / "empty").mkdir()
        FolderReader(tmp_path / "empty").read()
    with pytest.raises(FidBenchError, match="does not exist"):
        FolderReader(tmp_path / "nowhere").read()

    caplog.set_level(logging.WARNING)
    loose = tmp_path / "loose"
    image(loose / "real" / "a.png")
    image(loose / "fake" / "b.png")
    image(loose / "c.png")
    assert len(FolderReader(loose).read().table) == 2
    assert any("outside any class folder" in r.getMessage() for r in caplog.records)


def test_cifake_archive_subset(tmp_path: Path) -> None:
    """A few files of each of the 4 folders of the real archive map to the right label and split."""
    if not CIFAKE_ARCHIVE.is_file():
        pytest.skip(f"{CIFAKE_ARCHIVE} not present")
    wanted = {("train", "REAL"), ("train", "FAKE"), ("test", "REAL"), ("test", "FAKE")}
    per_folder = 3
    taken: dict[tuple[str, str], int] = dict.fromkeys(wanted, 0)
    with tarfile.open(CIFAKE_ARCHIVE, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")  # cheap: this loop sees all 120k members
            if len(parts) != 3 or (parts[0], parts[1]) not in wanted or not member.isfile():
                continue
            key = (parts[0], parts[1])
            if taken[key] < per_folder:
                tar.extract(member, tmp_path / "cifake", filter="data")
                taken[key] += 1
            if all(n == per_folder for n in taken.values()):
                break
    assert all(n == per_folder for n in taken.values())
    samples = make_reader("folder", tmp_path / "cifake", tmp_path / "cache").read()
    table = samples.table
    assert len(table) == 4 * per_folder and len(samples.skipped) == 0
    for row in table.itertuples():
        split, cls = row.id.split("/")[:2]
        assert row.split == split
        assert row.label == (1 if cls == "FAKE" else 0)
        assert row.sha1 == sha1(Path(row.path))
    assert table.groupby(["split", "label"]).size().to_dict() == {
        ("test", 0): 3,
        ("test", 1): 3,
        ("train", 0): 3,
        ("train", 1): 3,
    }
    with Image.open(table["path"].iloc[0]) as img:
        assert img.size == (32, 32) and img.format == "JPEG"
