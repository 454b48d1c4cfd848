"""Shared slots for the units a reading process sends (starlabels.inference.shared_slots): arrays come back
equal; a slot is given to a new unit only once every array of the unit before is dropped, so units a
caller keeps are never overwritten; slots grow for larger units; in a run each slot is mapped once."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

from starlabels.inference import catalog_reading
from starlabels.inference.catalog import run_settings
from starlabels.inference.catalog_inputs import expand_inputs, plan_units
from starlabels.inference.inference_model import resolve
from starlabels.inference.shared_slots import GROWTH_STEP, SharedSlots, SlotArray

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"),
                                reason="shared slots need memfd_create (Linux)")


def everything(a) -> bool:
    return isinstance(a, np.ndarray)


@pytest.fixture
def slots():
    made = SharedSlots.create(2)
    yield made
    made.close()


def test_arrays_come_back_equal_as_views_of_the_slot(slots):
    rng = np.random.default_rng(0)
    sent = [rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=7), np.arange(4, dtype=np.int16)]
    put = slots.writer(0, everything)
    placed = [put(a) for a in sent]
    assert all(isinstance(p, SlotArray) and p.slot == 0 for p in placed)
    assert [p.offset % 64 for p in placed] == [0, 0, 0]  # each array starts on a cache line
    assert placed[1].offset >= placed[0].end and placed[2].offset >= placed[1].end  # no overlap
    view = slots.reader(placed)
    for a, p in zip(sent, placed, strict=True):
        got = view(p)
        assert got.dtype == a.dtype and got.shape == a.shape
        np.testing.assert_array_equal(got, a)
    assert put("not an array") == "not an array"


def test_a_slot_is_free_again_only_when_every_array_of_its_unit_is_dropped(slots):
    placed = [slots.writer(0, everything)(np.ones((4, 4)))]
    kept = slots.reader(placed)(placed[0])[1:3, ::2]  # a view of a view: still the unit's memory
    assert slots.free_slot() == 1
    assert slots.free_slot(busy=[1]) is None  # slot 1 is being read into, slot 0 is kept
    derived = kept * 2  # a copy: does not hold the slot
    del kept
    gc.collect()
    assert slots.free_slot(busy=[1]) == 0
    np.testing.assert_array_equal(derived, 2.0)


def test_a_slot_grows_for_a_larger_unit_and_is_mapped_again(slots):
    small = np.full(10, 1.0)
    p = [slots.writer(0, everything)(small)]
    np.testing.assert_array_equal(slots.reader(p)(p[0]), small)
    maps = slots.remaps_
    big = np.arange(3 * GROWTH_STEP // 8, dtype=np.float64)  # 3 growth steps: more than the slot holds
    p = [slots.writer(0, everything)(big)]
    np.testing.assert_array_equal(slots.reader(p)(p[0]), big)
    assert slots.remaps_ == maps + 1
    assert os.fstat(slots._fds[0]).st_size % GROWTH_STEP == 0


def test_a_units_arrays_must_share_one_slot(slots):
    p0 = slots.writer(0, everything)(np.ones(3))
    p1 = slots.writer(1, everything)(np.ones(3))
    with pytest.raises(ValueError, match="one slot"):
        slots.reader([p0, p1])


def recorded_slots(monkeypatch) -> list[SharedSlots]:
    """The SharedSlots the next runs make, recorded."""
    made: list[SharedSlots] = []
    real_create = SharedSlots.create
    monkeypatch.setattr(SharedSlots, "create",
                        classmethod(lambda cls, n: made.append(real_create(n)) or made[-1]))
    return made


def _units(raw_model_folder, inputs):
    im = resolve(raw_model_folder)
    items, _ = expand_inputs(inputs)
    units, _ = plan_units(items, files_per_unit=2, rows_per_unit=2)
    return im, units, run_settings(uncertainty="noise", n_samples=2)


def _arrays(read) -> list[np.ndarray]:
    found: list[np.ndarray] = []

    def keep(a):
        found.append(np.asarray(a))
        return a

    catalog_reading._each_array(read, keep)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reading process is Linux-only")
def test_units_a_caller_keeps_are_never_overwritten(raw_model_folder, inputs, monkeypatch):
    """All eight units kept at once: the first four go through the four slots, the others find none free
    (each holds a kept unit) and cross in fresh shared memory; every array is as read in line."""
    monkeypatch.setattr(catalog_reading, "SHARED_MEMORY_MIN_BYTES", 0)
    made = recorded_slots(monkeypatch)
    readers = []
    real_reader = SharedSlots.reader
    monkeypatch.setattr(SharedSlots, "reader", lambda self, placed: readers.append(placed[0].slot)
                        or real_reader(self, placed))
    im, units, settings = _units(raw_model_folder, inputs)
    assert len(units) == 4
    units = units * 2
    kept = list(catalog_reading.read_units(im, units, settings, "process"))
    inline = list(catalog_reading.read_units(im, units, settings, "inline"))
    assert readers == [0, 1, 2, 3] and len(made) == 1 and made[0].remaps_ == 4
    for (u, a), (v, b) in zip(kept, inline, strict=True):
        assert u == v
        got, want = _arrays(a), _arrays(b)
        assert len(got) == len(want) > 0
        for x, y in zip(got, want, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reading process is Linux-only")
def test_a_run_that_drops_each_unit_maps_each_slot_once(raw_model_folder, inputs, monkeypatch):
    monkeypatch.setattr(catalog_reading, "SHARED_MEMORY_MIN_BYTES", 0)
    made = recorded_slots(monkeypatch)
    im, units, settings = _units(raw_model_folder, inputs)
    units = units * 3  # 12 units through 4 slots
    inline = [_arrays(r) for _, r in catalog_reading.read_units(im, units, settings, "inline")]
    process = catalog_reading.read_units(im, units, settings, "process")
    for (_, read), want in zip(process, inline, strict=True):
        got = _arrays(read)
        for x, y in zip(got, want, strict=True):
            np.testing.assert_array_equal(x, y)
        del read, got
    assert len(made) == 1 and made[0].remaps_ == 4
