"""make_folds: disjoint, stratified, deterministic, duplicate-aware folds, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fid_bench.data.samples import SAMPLE_COLUMNS
from fid_bench.data.splits import Fold, make_folds
from fid_bench.errors import FidBenchError
from tests.conftest import CONF_DIR


def table(n_real: int, n_fake: int, *, n_test: tuple[int, int] = (0, 0), n_predict: int = 0) -> pd.DataFrame:
    """A samples table: ``n_real``/``n_fake`` "train" rows, optional labelled "test" and "predict" rows."""
    rows = []
    for split, (r, f) in (("train", (n_real, n_fake)), ("test", n_test)):
        rows += [(split, 0)] * r + [(split, 1)] * f
    rows += [("predict", -1)] * n_predict
    frame = pd.DataFrame(
        {
            "id": [f"img{k:04d}" for k in range(len(rows))],
            "path": [f"/data/img{k:04d}.png" for k in range(len(rows))],
            "label": [lab for _, lab in rows],
            "split": [s for s, _ in rows],
            "group": "",
            "sha1": [f"{k:040x}" for k in range(len(rows))],
        },
        columns=SAMPLE_COLUMNS,
    )
    # interleave the classes so that position says nothing about the label
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def parts(fold: Fold) -> dict[str, np.ndarray]:
    return {"train": fold.train, "val": fold.val, "test": fold.test}


def assert_disjoint(fold: Fold) -> None:
    p = parts(fold)
    for name, rows in p.items():
        assert rows.dtype.kind == "i" and len(np.unique(rows)) == len(rows), name
    assert not set(fold.train) & set(fold.val)
    assert not set(fold.train) & set(fold.test)
    assert not set(fold.val) & set(fold.test)


def fake_share(frame: pd.DataFrame, rows: np.ndarray) -> float:
    return float(frame["label"].to_numpy()[rows].mean())


def test_holdout_without_test_split_is_stratified() -> None:
    t = table(300, 100, n_predict=7)
    (fold,) = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=None, seed=0)
    assert fold.index == 0
    assert_disjoint(fold)
    pool = set(np.flatnonzero(t["split"] == "train"))
    assert set(fold.train) | set(fold.val) | set(fold.test) == pool  # predict rows never in a fold
    # test = 20 % of each class, val = 20 % of each class of the rest
    labels = t["label"].to_numpy()
    assert np.bincount(labels[fold.test]).tolist() == [60, 20]
    assert np.bincount(labels[fold.val]).tolist() == [48, 16]
    assert np.bincount(labels[fold.train]).tolist() == [192, 64]
    for rows in parts(fold).values():
        assert fake_share(t, rows) == pytest.approx(0.25)


def test_holdout_uses_given_test_split() -> None:
    t = table(80, 40, n_test=(10, 10), n_predict=3)
    (fold,) = make_folds(t, val_fraction=0.25, test_fraction=0.2, cv_folds=0, seed=1)
    assert_disjoint(fold)
    assert set(fold.test) == set(np.flatnonzero(t["split"] == "test"))
    assert set(t["split"].to_numpy()[np.concatenate([fold.train, fold.val])]) == {"train"}
    labels = t["label"].to_numpy()
    assert np.bincount(labels[fold.val]).tolist() == [20, 10]
    assert len(fold.train) == 90


@pytest.mark.parametrize("given_test", [(0, 0), (5, 5)])
def test_deterministic_for_a_seed(given_test: tuple[int, int]) -> None:
    t = table(60, 30, n_test=given_test)
    for k in (None, 3):
        a = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=k, seed=7)
        b = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=k, seed=7)
        c = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=k, seed=8)
        for fa, fb in zip(a, b, strict=True):
            for name in ("train", "val", "test"):
                np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name))
        assert any(not np.array_equal(fa.val, fc.val) for fa, fc in zip(a, c, strict=True))


def test_kfold_partitions_train_pool() -> None:
    t = table(50, 25, n_test=(5, 5), n_predict=4)
    folds = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=5, seed=0)
    assert [f.index for f in folds] == [0, 1, 2, 3, 4]
    pool = np.flatnonzero(t["split"] == "train")
    tested = np.concatenate([f.test for f in folds])
    # every pool row is tested exactly once; the data set's own test rows are not used
    assert sorted(tested.tolist()) == pool.tolist()
    labels = t["label"].to_numpy()
    for f in folds:
        assert_disjoint(f)
        assert set(f.train) | set(f.val) | set(f.test) == set(pool)
        assert np.bincount(labels[f.test]).tolist() == [10, 5]
        assert np.bincount(labels[f.val]).tolist() == [8, 4]


def test_duplicates_stay_on_one_side() -> None:
    t = table(120, 60)
    sha1 = t["sha1"].to_numpy().copy()
    labels = t["label"].to_numpy()
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    groups = [
        real[:5],
        real[5:7],
        fake[:4],
        fake[4:6],
        np.array([real[7], fake[6], fake[7]]),
    ]  # last: mixed labels
    for g, members in enumerate(groups):
        sha1[members] = f"dup{g}"
    t["sha1"] = sha1
    # a row without a hash is its own group, never merged with other unhashed rows
    t.loc[real[50:53], "sha1"] = ""
    for k, seed in [(None, s) for s in range(10)] + [(4, s) for s in range(5)]:
        for fold in make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=k, seed=seed):
            assert_disjoint(fold)
            side = np.full(len(t), -1)
            for code, rows in enumerate(parts(fold).values()):
                side[rows] = code
            for members in groups:
                assert len(set(side[members])) == 1, (k, seed, members)


def test_positions_not_index_labels() -> None:
    t = table(30, 15)
    t.index = np.arange(len(t))[::-1] + 1000  # a non-default index must not matter
    (fold,) = make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=None, seed=0)
    assert max(map(max, parts(fold).values())) < len(t)
    assert np.bincount(t["label"].to_numpy()[fold.test]).tolist() == [6, 3]


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (table(20, 0), {}, "only real"),
        (table(20, 10, n_test=(0, 4)), {}, "fold 0 test: only generated"),
        (table(20, 2), {}, "class 1 has 1 distinct image"),
        (table(20, 10), {"val_fraction": 0.0}, "val_fraction must be in"),
        (table(20, 10), {"test_fraction": 1.0}, "test_fraction must be in"),
        (table(20, 10), {"val_fraction": "abc"}, "val_fraction must be a number"),
        (table(20, 3), {"cv_folds": 4}, "fewer than cv.folds=4"),
        (table(20, 10), {"cv_folds": -2}, "cv.folds must be"),
        (table(20, 10), {"cv_folds": 2.5}, "cv.folds must be"),
    ],
)
def test_clear_errors(frame: pd.DataFrame, kwargs: dict, message: str) -> None:
    args = {"val_fraction": 0.2, "test_fraction": 0.2, "cv_folds": None, "seed": 0, **kwargs}
    with pytest.raises(FidBenchError, match=message) as err:
        make_folds(frame, **args)
    assert "\n" not in str(err.value)


def test_unlabelled_training_row_rejected() -> None:
    t = table(20, 10)
    t.loc[3, "label"] = -1
    with pytest.raises(FidBenchError, match="labels must be 0 or 1"):
        make_folds(t, val_fraction=0.2, test_fraction=0.2, cv_folds=None, seed=0)


def test_fractions_from_composed_config() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["data=demo", "data.val_fraction=0.25", "cv.folds=3"])
    t = table(60, 30)
    folds = make_folds(
        t,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        cv_folds=cfg.cv.folds,
        seed=cfg.seed,
    )
    assert len(folds) == 3
    labels = t["label"].to_numpy()
    for f in folds:
        assert np.bincount(labels[f.test]).tolist() == [20, 10]
        assert np.bincount(labels[f.val]).tolist() == [10, 5]  # 25 % of the other two folds
