"""Dataset splits: deterministic, disjoint, covering, fractions honoured (overall and per group)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlabels.data.splits import group_split, random_split, split_sizes
from starlabels.errors import InputDataError


def _check_partition(parts, n):
    allrows = np.concatenate(parts)
    assert len(allrows) == n
    assert np.array_equal(np.sort(allrows), np.arange(n))  # disjoint and covering
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3000),
    w=st.lists(st.integers(0, 20), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**31),
)
def test_random_split_partition_and_sizes(n, w, seed):
    fractions = np.array(w, float) / sum(w)
    parts = random_split(n, fractions, seed=seed)
    assert len(parts) == len(w)
    _check_partition(parts, n)
    sizes = np.array([len(p) for p in parts])
    # each part within one row of its exact share
    assert np.all(np.abs(sizes - n * fractions) < 1.0)


def test_random_split_exact_sizes_and_determinism():
    train, dev, test = random_split(1000, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(dev), len(test)) == (800, 100, 100)
    again = random_split(1000, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, dev, test), again, strict=True))
    other = random_split(1000, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(train, other[0])
    # a random split is not a block split: the test rows are spread over the range
    assert test.min() < 100 and test.max() > 900


def test_split_sizes_largest_remainder():
    # 7 rows at (0.5, 0.25, 0.25) -> exact (3.5, 1.75, 1.75); remainders .5,.75,.75 -> dev, test get +1
    assert split_sizes(7, (0.5, 0.25, 0.25)).tolist() == [3, 2, 2]
    assert split_sizes(10, (1 / 3, 1 / 3, 1 / 3)).tolist() == [4, 3, 3]
    assert split_sizes(0, (0.8, 0.1, 0.1)).tolist() == [0, 0, 0]


def test_group_split_per_group_fractions():
    rng = np.random.default_rng(0)
    groups = np.array(["payne"] * 1000 + ["mdwarf"] * 50 + ["yso"] * 20)
    rng.shuffle(groups)
    fr = {"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2)}
    parts = group_split(groups, fr, default=(0.5, 0.0, 0.5), seed=1)
    _check_partition(parts, len(groups))
    expected = {"payne": (800, 100, 100), "mdwarf": (30, 10, 10), "yso": (10, 0, 10)}
    for name, sizes in expected.items():
        got = tuple(int(np.sum(groups[p] == name)) for p in parts)
        assert got == sizes, name
    again = group_split(groups, fr, default=(0.5, 0.0, 0.5), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_group_split_stable_when_other_groups_change():
    a = np.array(["payne"] * 200 + ["mdwarf"] * 40)
    b = np.array(["payne"] * 200 + ["mdwarf"] * 40 + ["yso"] * 30)  # rows appended
    fr = {"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2), "yso": (0.5, 0.25, 0.25)}
    pa = group_split(a, fr, seed=7)
    pb = group_split(b, fr, seed=7)
    for x, y in zip(pa, pb, strict=True):
        assert np.array_equal(x, y[y < len(a)])
    # bytes group names (as read from HDF5) give the same split as str
    pc = group_split(a.astype("S"), fr, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(pa, pc, strict=True))


def test_bad_fractions_raise():
    with pytest.raises(InputDataError):
        random_split(10, (0.5, 0.4, 0.2))
    with pytest.raises(InputDataError):
        random_split(10, (1.2, -0.2))
    with pytest.raises(InputDataError, match="no fractions"):
        group_split(["a", "b"], {"a": (1.0, 0.0, 0.0)}, default=None)
    with pytest.raises(InputDataError, match="same number of parts"):
        group_split(["a", "b"], {"a": (1.0, 0.0)}, default=(0.8, 0.1, 0.1))
