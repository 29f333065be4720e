"""Balancing strategies: counts after resampling, weights, determinism, bad labels."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from fid_bench.balance import ClassWeight, NoBalance, Oversample, Undersample
from fid_bench.errors import FidBenchError

# 7 real, 3 generated, interleaved so positions and labels are not the same order
Y = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0])


def test_none_keeps_every_row_once_unweighted() -> None:
    s = NoBalance()
    assert s.name == "none"
    np.testing.assert_array_equal(s.resample(Y), np.arange(10))
    assert s.class_weights(Y) is None
    assert s.sample_weight(Y) is None


def test_class_weight_is_inverse_frequency_and_sums_to_n() -> None:
    s = ClassWeight()
    w = s.class_weights(Y)
    # n / (k * count): 10 / (2 * 7) and 10 / (2 * 3)
    assert w == pytest.approx({0: 10 / 14, 1: 10 / 6})
    sw = s.sample_weight(Y)
    assert sw.shape == Y.shape
    assert sw.sum() == pytest.approx(len(Y))
    # each class carries the same total weight
    assert sw[Y == 0].sum() == pytest.approx(sw[Y == 1].sum())
    np.testing.assert_allclose(sw[Y == 1], 10 / 6)
    np.testing.assert_array_equal(s.resample(Y), np.arange(10))


def test_class_weight_of_no_rows_is_none_and_of_one_row_is_one() -> None:
    """Edge sizes by value (a mutant testing ``size == 1`` instead of ``size == 0`` survived before)."""
    assert ClassWeight().class_weights(np.array([], dtype=np.int64)) is None
    assert ClassWeight().class_weights(np.array([1])) == {1: 1.0}


def test_undersample_draws_each_majority_row_at_most_once() -> None:
    y = np.array([0] * 1000 + [1] * 200)
    picked = Undersample(seed=0).resample(y)
    assert len(picked) == 400 and len(np.unique(picked)) == 400  # without replacement
    assert (y[picked] == 1).sum() == 200


def test_class_weight_balanced_data_gives_unit_weights() -> None:
    y = np.array([0, 1, 1, 0])
    assert ClassWeight().class_weights(y) == pytest.approx({0: 1.0, 1: 1.0})


def test_oversample_equalises_counts_keeping_every_row() -> None:
    idx = Oversample(seed=3).resample(Y)
    assert len(idx) == 14
    assert np.bincount(Y[idx]).tolist() == [7, 7]
    # every original row is still there; minority rows are repeated 2 or 3 times (7 = 2*3 + 1)
    counts = np.bincount(idx, minlength=len(Y))
    assert (counts >= 1).all()
    np.testing.assert_array_equal(counts[Y == 0], 1)
    assert sorted(counts[Y == 1].tolist()) == [2, 2, 3]
    assert Oversample(seed=3).class_weights(Y) is None
    assert Oversample(seed=3).sample_weight(Y) is None


def test_undersample_equalises_counts_without_repeats() -> None:
    idx = Undersample(seed=3).resample(Y)
    assert len(idx) == 6
    assert np.bincount(Y[idx]).tolist() == [3, 3]
    assert len(np.unique(idx)) == len(idx)
    # every minority row kept
    assert set(np.flatnonzero(Y == 1)) <= set(idx.tolist())


@pytest.mark.parametrize("cls", [Oversample, Undersample])
def test_resampling_is_deterministic_per_seed(cls: type) -> None:
    y = np.r_[np.zeros(200, dtype=int), np.ones(37, dtype=int)]
    a, b = cls(seed=1).resample(y), cls(seed=1).resample(y)
    np.testing.assert_array_equal(a, b)
    c = cls(seed=2).resample(y)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", [Oversample, Undersample])
def test_single_class_or_empty_is_left_alone(cls: type) -> None:
    np.testing.assert_array_equal(cls(seed=0).resample(np.zeros(4, dtype=int)), np.arange(4))
    assert cls(seed=0).resample(np.array([], dtype=int)).size == 0


def test_whole_float_labels_are_taken_as_integers() -> None:
    # labels read from a CSV column with a missing value arrive as floats (0.0 / 1.0)
    np.testing.assert_array_equal(NoBalance().resample(Y.astype(float)), np.arange(10))
    assert ClassWeight().class_weights(np.array([0.0, 1.0, 1.0, 1.0])) == {0: 2.0, 1: 2 / 3}


def test_unknown_labels_are_a_one_line_error() -> None:
    with pytest.raises(FidBenchError, match=r"got \[-1\]"):
        ClassWeight().class_weights(np.array([0, 1, -1]))
    with pytest.raises(FidBenchError, match="0 \\(real\\) or 1"):
        Oversample(seed=0).resample(np.array([0, 2, 1]))
    with pytest.raises(FidBenchError, match="integers"):
        NoBalance().resample(np.array([0.0, 0.5]))
    with pytest.raises(FidBenchError, match="seed"):
        Oversample(seed="abc")


@pytest.mark.parametrize(
    ("choice", "expected_name", "expected_len"),
    [
        ("none", "none", 10),
        ("class_weight", "class_weight", 10),
        ("oversample", "oversample", 14),
        ("undersample", "undersample", 6),
    ],
)
def test_config_group_builds_each_strategy(
    compose_cfg, choice: str, expected_name: str, expected_len: int
) -> None:
    cfg = compose_cfg(f"balance={choice}", "seed=7")
    strategy = instantiate(cfg.balance)
    assert strategy.name == expected_name
    assert len(strategy.resample(Y)) == expected_len
    if choice in ("oversample", "undersample"):
        # the job seed reaches the strategy
        assert strategy.seed == 7
