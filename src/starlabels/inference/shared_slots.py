"""Reusable shared memory for the arrays a reading process hands to the network's process (Linux).

A catalog run's reading process (:mod:`~starlabels.inference.catalog_reading`) sends each unit's
large arrays — the prepared network input and its errors, 17.6 MB for 256 APOGEE spectra — to the
network's process. In a fresh shared segment per unit, both processes page-fault every page of it
(the network's process inside its first layer) and the network's process unmaps it when the unit is
dropped. These **slots** are made once per run, before the reading process is forked, so both
processes hold them; a unit is copied into a free slot by the reading process and read in place by
the network's process. From the second round of slots on, their pages are mapped in both processes:
no page faults, no unmapping, no file descriptors passed per unit (``bench/reader_transfer.py``).

A slot is an anonymous in-memory file (``memfd_create``) that grows when a unit needs more (never
shrinks; its pages are freed when the run ends). The network's process gives a slot to a unit only
when nothing refers any more to the arrays of the unit that was in it before (a weak reference to
that unit's buffer, which every array handed out is a view of): arrays a caller keeps are never
overwritten. A unit without a free slot, or where ``memfd_create`` is missing, crosses as before.
"""

from __future__ import annotations

import mmap
import os
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SharedSlots", "SlotArray"]

#: Each array starts at a multiple of this many bytes in its slot (a cache line).
ALIGNMENT: int = 64
#: Slots grow by at least a quarter, in whole multiples of this many bytes (fewer regrowths).
GROWTH_STEP: int = 2 << 20


@dataclass(frozen=True)
class SlotArray:
    """Where an array was put in a slot: what crosses between the processes instead of the array.
    ``offset`` in bytes from the slot's start; ``dtype`` a NumPy dtype string."""

    slot: int
    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def end(self) -> int:
        """The byte after the array's last one."""
        return self.offset + int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


class SharedSlots:
    """``n`` reusable shared-memory slots. Made in the network's process before the reading process
    is forked (:meth:`create`); the reading process writes units with :meth:`writer`, the network's
    process picks free slots (:meth:`free_slot`) and reads units in place (:meth:`reader`)."""

    def __init__(self, fds: list[int]) -> None:
        self._fds = fds
        self._maps: dict[int, mmap.mmap] = {}  # this process's mapping of each slot
        self._occupants: dict[int, weakref.ref] = {}  # network's process: the unit buffer in a slot
        self.remaps_: int = 0  # mappings made by this process (a slot's first use, or it grew)

    @classmethod
    def create(cls, n: int) -> SharedSlots | None:
        """``n`` empty slots, or None where the platform has no ``memfd_create``."""
        try:
            return cls([os.memfd_create(f"starlabels-unit-slot-{i}", os.MFD_CLOEXEC) for i in range(n)])
        except (AttributeError, OSError):
            return None

    def __len__(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        """Close this process's descriptors; mappings stay until the arrays viewing them are gone."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def free_slot(self, busy: Iterable[int | None] = ()) -> int | None:
        """A slot not in ``busy`` (given to units the reading process has not sent back yet) whose last
        unit's arrays are all dropped; None when there is none."""
        taken = set(busy)
        for slot in range(len(self._fds)):
            occupant = self._occupants.get(slot)
            if slot not in taken and (occupant is None or occupant() is None):
                return slot
        return None

    def _mapping(self, slot: int, end: int) -> mmap.mmap:
        """This process's mapping of ``slot``, at least ``end`` bytes long (mapped again when the slot
        grew beyond the old mapping; the old one stays alive while arrays view it)."""
        mapped = self._maps.get(slot)
        if mapped is None or len(mapped) < end:
            mapped = self._maps[slot] = mmap.mmap(self._fds[slot], os.fstat(self._fds[slot]).st_size)
            self.remaps_ += 1
        return mapped

    def _grow(self, slot: int, end: int) -> None:
        size = os.fstat(self._fds[slot]).st_size
        if end > size:
            wanted = max(end, size + size // 4)
            os.ftruncate(self._fds[slot], -(-wanted // GROWTH_STEP) * GROWTH_STEP)

    def writer(self, slot: int, wanted: Callable[[Any], bool]) -> Callable[[Any], Any]:
        """Reading process: a function that copies each array ``wanted`` accepts into ``slot`` one after
        the other and returns its :class:`SlotArray` (anything else is returned as it is)."""
        used = 0

        def put(a: Any) -> Any:
            nonlocal used
            if not wanted(a):
                return a
            offset = -(-used // ALIGNMENT) * ALIGNMENT
            placed = SlotArray(slot, offset, tuple(int(n) for n in a.shape), a.dtype.str)
            self._grow(slot, placed.end)
            dest = np.frombuffer(self._mapping(slot, placed.end), np.uint8, a.nbytes, offset)
            np.copyto(dest.view(a.dtype).reshape(a.shape), a)
            used = placed.end
            return placed

        return put

    def reader(self, placed: list[SlotArray]) -> Callable[[SlotArray], np.ndarray]:
        """Network's process: for one unit's :class:`SlotArray` s (at least one, all in one slot), a
        function giving each as a NumPy view of the slot; the slot stays taken until every such view is
        dropped."""
        slot = placed[0].slot
        if any(p.slot != slot for p in placed):
            raise ValueError("a unit's arrays are in one slot")
        end = max(p.end for p in placed)
        unit_buffer = np.frombuffer(self._mapping(slot, end), np.uint8, end)
        self._occupants[slot] = weakref.ref(unit_buffer)

        def view(p: SlotArray) -> np.ndarray:
            return unit_buffer[p.offset:p.end].view(np.dtype(p.dtype)).reshape(p.shape)

        return view
