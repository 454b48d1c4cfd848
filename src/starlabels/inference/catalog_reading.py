"""A catalog run's units read and prepared for the network ahead of it: in line, in a thread or in a process.

Everything before the network — reading a unit's files or HDF5 rows onto the model's grid
(:func:`~starlabels.inference.catalog_inputs.read_unit`), pixel rejection and the model's
preprocessing (:func:`prepare_blocks`) — draws no random numbers, so it can run anywhere and early
while the network computes the unit before. :func:`read_units` yields ``(unit, read)`` in unit
order, where ``read`` is the unit's prepared blocks or the unit error its reading raised (retried by
:func:`~starlabels.inference.catalog.run_unit_safely`), with one of three readers:

``"process"`` (the default on Linux)
    One reading process, two units ahead (:class:`concurrent.futures.ProcessPoolExecutor`, fork
    start: the child shares the loaded model and imports, nothing is pickled to start it). A unit's
    large arrays come back in shared memory — in one of four slots made before the fork and reused
    unit after unit (:mod:`~starlabels.inference.shared_slots`), else in a fresh shared tensor
    (torch's file-descriptor sharing, as a DataLoader's workers do) —, the rest pickled.
    The network's process keeps its cores and its GIL to itself; ``bench/end_to_end.py`` measures
    the gain over a thread (bench/results/end_to_end.md). A reading process that dies (a crash in a
    file-format library, the kernel's OOM killer) costs only the unit it was reading: that unit is
    recorded failed with :class:`ReadingProcessError` (not read again in the network's process, which
    the same crash would stop) and a new process reads the units after it. Once the last unit is
    handed over, the process is shut down and joined in a background thread while that unit
    computes; the iterator's end waits for that thread, so no reading process outlives a run.
``"thread"``
    A background thread one unit ahead (:func:`~starlabels.inference.prefetch.prefetched`). It shares
    the GIL with the network: the Python parts of reading (FITS header walks, bookkeeping) slow the
    network's kernels down.
``"inline"``
    Each unit read just before it is computed.

All three give bit-identical catalogs (tested).
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from starlabels.errors import StarlabelsError
from starlabels.inference.catalog_inputs import Block, Unit, read_unit
from starlabels.inference.prefetch import prefetched
from starlabels.inference.prepared_spectra import prepare_spectra
from starlabels.inference.shared_slots import SharedSlots, SlotArray

__all__ = [
    "READERS",
    "UNIT_ERRORS",
    "ReadingProcessError",
    "UnitRead",
    "block_spectra",
    "default_reader",
    "prepare_blocks",
    "read_prepared_unit",
    "read_units",
    "reader_name",
]

#: Errors that fail a unit as a whole (retried, then recorded); anything else stops the run.
UNIT_ERRORS: tuple[type[BaseException], ...] = (OSError, StarlabelsError, ValueError, RuntimeError)
READERS: tuple[str, ...] = ("process", "thread", "inline")
#: Units the reading process is given beyond the one the network computes (read one after the
#: other): while the network runs on unit k, units k+1 and k+2 are read, so a unit that reads
#: slowly (a cold file, a busy machine) is absorbed by the one read before it. At most this many
#: units in memory besides the one computing (and the one before it, until the caller drops it).
PROCESS_UNITS_AHEAD: int = 2
#: Float arrays at least this large cross from the reading process in shared memory (smaller ones
#: by pickle: a file descriptor per array costs more than copying a few kB).
SHARED_MEMORY_MIN_BYTES: int = 1 << 20

UnitRead = tuple[dict[tuple[str, str], Block], list[tuple[str, str]]]


class ReadingProcessError(RuntimeError):
    """The reading process stopped (killed, crashed) while it read this unit; the unit is recorded
    failed without being read again in the network's process."""


def prepare_blocks(im: Any, read: UnitRead) -> UnitRead:
    """The blocks of a unit prepared for a network (checked and preprocessed, in float32:
    :func:`~starlabels.inference.prepared_spectra.prepare_spectra`), their arrays dropped; a Cannon or
    Payne model's blocks as they are. No random draws, so it runs wherever the unit is read."""
    blocks, _ = read
    if im.method is not None:
        return read
    for b in blocks.values():
        if b.meta and b.prepared is None:
            # float32 like the network's input and like HDF5 rows (files' spectra come as float64
            # Spectrum arrays): the same spectra give the same catalog from FITS files and from HDF5
            b.prepared = prepare_spectra(im, **block_spectra(b, np.float32))
            b.flux, b.error, b.bitmask = [], [], []
    return read


def block_spectra(b: Block, dtype: Any = None) -> dict[str, Any]:
    """A block's spectra as the keywords of :func:`starlabels.predict` / ``prepare_spectra`` (flux and
    errors (n, P) in ``dtype``, default as read; the bitmask as read)."""
    pre = b.kind == "pre"
    return {"flux": _joined(b.flux, dtype), "error": _joined(b.error, dtype),
            "bitmask": _joined(b.bitmask) if b.bitmask else None, "preprocessed": pre,
            "grid": None if pre else b.grid}


def _joined(arrays: list[np.ndarray], dtype: Any = None) -> np.ndarray:
    """``np.concatenate(arrays, dtype=dtype)``, without the copy where that is one array already in
    ``dtype`` (a block of files is one since catalog_inputs gathers their rows as it reads them)."""
    if len(arrays) == 1 and (dtype is None or arrays[0].dtype == dtype):
        return arrays[0]
    return np.concatenate(arrays, dtype=dtype)


def read_prepared_unit(unit: Unit, im: Any, settings: dict[str, Any]) -> UnitRead:
    """A unit's inputs read (:func:`~starlabels.inference.catalog_inputs.read_unit`) and prepared for the
    model (:func:`prepare_blocks`): everything before the network."""
    return prepare_blocks(im, read_unit(unit, im, settings.get("resample")))


def default_reader() -> str:
    """``"process"`` on Linux (a forked reading process), else ``"thread"``: macOS' system libraries
    are not safe to use after a fork, and spawning instead would re-import the caller's script and
    pickle the model. Also ``"thread"`` inside a daemonic process (a Dask or multiprocessing pool's
    worker), which may not start processes."""
    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return "thread"
    return "process"


def reader_name(prefetch: bool | str) -> str:
    """The reader a catalog run's ``prefetch`` asks for: True → :func:`default_reader`, False →
    ``"inline"``, or one of :data:`READERS` by name (``"process"`` falls back to ``"thread"`` where
    :func:`default_reader` would)."""
    if prefetch is True:
        return default_reader()
    if prefetch is False or prefetch is None:
        return "inline"
    name = str(prefetch)
    if name not in READERS:
        raise ValueError(f"prefetch must be True, False or one of {', '.join(READERS)}; got {prefetch!r}")
    return default_reader() if name == "process" else name


def read_units(
    im: Any, units: Sequence[Unit], settings: dict[str, Any], reader: str = "inline"
) -> Iterator[tuple[Unit, UnitRead | BaseException]]:
    """``(unit, its inputs read and prepared, or the unit error reading them raised)`` for each unit in
    order, read by ``reader`` (one of :data:`READERS`; see the module docstring). Closing the iterator
    early stops the reader."""
    if reader == "process":
        return _read_in_process(im, list(units), settings)
    reads = _read_inline(im, units, settings)
    return prefetched(reads, depth=1) if reader == "thread" else reads


def _read_inline(im: Any, units: Sequence[Unit], settings: dict[str, Any]) -> Iterator[tuple]:
    for u in units:
        yield u, _read_or_error(u, im, settings)


def _read_or_error(unit: Unit, im: Any, settings: dict[str, Any]) -> UnitRead | BaseException:
    """:func:`read_prepared_unit`, or the unit error it raised (retried by ``run_unit_safely`` in the
    computing thread); any other error propagates and stops the run."""
    try:
        return read_prepared_unit(unit, im, settings)
    except UNIT_ERRORS as exc:
        return exc


# ----------------------------------------------------------------------------------------------
# the reading process

_child: dict[str, Any] = {}  # the reading process's model and settings (set in the child only)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _start_child(im: Any, settings: dict[str, Any], parent: int, slots: SharedSlots | None = None) -> None:
    """The reading process's start: it dies with its parent (a forked child holds copies of the
    parent's files, among them the output lock: a killed run's orphaned reader would keep the lock
    and block the resume), runs torch on one thread, and keeps the model, settings and slots."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))  # Linux: the process reader's only OS
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    # one torch thread, as a DataLoader's worker sets: the parent's OpenMP pool did not survive the fork,
    # and a parallel torch kernel here (the copy into shared memory) would wait for it forever
    torch.set_num_threads(1)
    _child["im"], _child["settings"], _child["slots"] = im, settings, slots


def _read_in_child(unit: Unit, slot: int | None = None) -> UnitRead | BaseException:
    """Runs in the reading process: one unit read and prepared (its large arrays in shared ``slot``
    when given), or its unit error (as one that survives pickling: its type name and text in a
    RuntimeError when the error itself cannot)."""
    read = _read_or_error(unit, _child["im"], _child["settings"])
    if not isinstance(read, BaseException):
        if slot is not None:  # the network's process gives slots only when it made them (before the fork)
            return _each_array(read, _child["slots"].writer(slot, _large))
        return _in_shared_memory(read)
    try:
        pickle.loads(pickle.dumps(read))
    except Exception:
        return RuntimeError(f"{type(read).__name__}: {read}")
    return read


def _in_shared_memory(read: UnitRead) -> UnitRead:
    """The unit's large arrays (the network input and its errors, or a Cannon's/Payne's raw flux)
    moved into shared memory as torch tensors, which pickle as a file descriptor: the network's
    process maps them instead of receiving and unpickling a copy (``bench/reader_transfer.py``). An
    array that does not fit in shared memory (a small /dev/shm) is sent by pickle as before."""
    return _each_array(read, _shared)


def _from_shared_memory(
    read: UnitRead | BaseException, slots: SharedSlots | None = None
) -> UnitRead | BaseException:
    """:func:`_in_shared_memory` (or a slot's :meth:`~SharedSlots.writer`) undone in the network's
    process: shared tensors and slot arrays back to NumPy views (no copy)."""
    if isinstance(read, BaseException):
        return read
    placed: list[SlotArray] = []

    def collect(a: Any) -> Any:
        if isinstance(a, SlotArray):
            placed.append(a)
        return a

    _each_array(read, collect)
    if not placed:
        return _each_array(read, _array)
    if slots is None:
        raise RuntimeError("the reading process sent arrays in shared slots this process does not have")
    in_slot = slots.reader(placed)
    return _each_array(read, lambda a: in_slot(a) if isinstance(a, SlotArray) else _array(a))


def _each_array(read: UnitRead, convert: Any) -> UnitRead:
    """``read`` with ``convert`` applied to each block's prepared arrays and raw flux and errors, in
    one fixed order."""
    blocks, _ = read
    for b in blocks.values():
        if b.prepared is not None:
            chunks = tuple((rows, tuple(convert(a) for a in arrays)) for rows, arrays in b.prepared.chunks)
            b.prepared = dataclasses.replace(b.prepared, chunks=chunks)
        b.flux, b.error = [convert(a) for a in b.flux], [convert(a) for a in b.error]
    return read


def _large(a: Any) -> bool:
    """Whether ``a`` crosses in shared memory: a float array of at least SHARED_MEMORY_MIN_BYTES."""
    return isinstance(a, np.ndarray) and a.nbytes >= SHARED_MEMORY_MIN_BYTES and a.dtype.kind == "f"


def _shared(a: Any) -> Any:
    if not _large(a):
        return a
    try:
        return torch.from_numpy(np.ascontiguousarray(a)).share_memory_()
    except RuntimeError:  # no room in /dev/shm
        return a


def _array(a: Any) -> Any:
    return a.numpy() if isinstance(a, torch.Tensor) else a


def _new_pool(im: Any, settings: dict[str, Any], slots: SharedSlots | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_child, initargs=(im, settings, os.getpid(), slots))


def _read_in_process(im: Any, units: list[Unit], settings: dict[str, Any]) -> Iterator[tuple]:
    pool: ProcessPoolExecutor | None = None
    # one slot per unit in flight — read ahead, computing, and the one before it, which the caller still
    # holds while it asks for the next — made before the fork
    slots = SharedSlots.create(PROCESS_UNITS_AHEAD + 2)
    pending: deque[tuple[int, Future, int | None]] = deque()
    next_unit = idle_deaths = 0
    closing: threading.Thread | None = None
    try:
        while pending or next_unit < len(units):
            if pool is None:
                pool = _new_pool(im, settings, slots)
            while next_unit < len(units) and len(pending) <= PROCESS_UNITS_AHEAD:  # and the one popped next
                slot = slots.free_slot(busy=(s for _, _, s in pending)) if slots is not None else None
                try:
                    pending.append((next_unit, pool.submit(_read_in_child, units[next_unit], slot), slot))
                except BrokenProcessPool:  # it died on a unit in ``pending``: handled there
                    break
                next_unit += 1
            if not pending:  # it died between units, reading none of them: a new process, a few times
                pool.shutdown(wait=True)
                pool, idle_deaths = None, idle_deaths + 1
                if idle_deaths > 3:
                    raise RuntimeError("the reading process keeps stopping before it reads anything")
                continue
            pos, future, _ = pending.popleft()
            try:
                read = _from_shared_memory(future.result(), slots)
            except BrokenProcessPool as exc:
                # the process died reading this unit (the units queued behind it were not read yet):
                # the unit is failed, and a new process reads from the next one
                pool.shutdown(wait=True)
                pool = None
                next_unit = pending[0][0] if pending else next_unit
                pending.clear()
                read = ReadingProcessError(f"the reading process stopped while reading this unit ({exc})")
            if pool is not None and not pending and next_unit == len(units):
                # the last unit is read: the process exits and is joined while the caller computes it
                # (joining it after the unit was ~20 ms at the end of every run)
                closing = threading.Thread(target=pool.shutdown, name="starlabels-reader-exit")
                closing.start()
                pool = None
            yield units[pos], read
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if closing is not None:
            closing.join()
        if slots is not None:
            slots.close()
