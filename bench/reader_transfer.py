"""What handing a unit from the reading process to the network's process costs the network's process.

    python bench/reader_transfer.py [--units 32] [--rows 256]

A catalog run's reading process (:mod:`starlabels.inference.catalog_reading`) sends each prepared unit
— for APOGEE Net, float32 network input and errors, rows × 8575 pixels each — to the network's
process. Side by side in one run, the same arrays, one forked worker
(:class:`concurrent.futures.ProcessPoolExecutor`), units submitted ahead:

* ``pickled``: the arrays pickled into the pipe, received and unpickled (copied) by the receiver;
* ``fresh shared memory``: the arrays as torch tensors in new shared memory
  (``catalog_reading._in_shared_memory``, what the reading process sends when no slot is free),
  pickled as file descriptors and mapped by the receiver;
* ``reused shared slots``: the arrays copied into one of three shared slots made before the fork
  (:class:`starlabels.inference.shared_slots.SharedSlots`, what the reading process sends), read in
  place by the receiver.

Two units in flight at a time, as the catalog's reading process keeps them. Printed per unit: the
receiving process's CPU time (all its threads: the executor's result thread receives and unpickles)
and wall time, and the receiver's minor page faults. Each unit's arrays are summed on arrival (a
read of every byte, as the network would) and dropped before the next. Best of ``--rounds``;
1 torch thread in both processes; float32; glibc allocator defaults.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from starlabels.inference import catalog_reading
from starlabels.inference.shared_slots import SharedSlots

PIXELS = 8575


def _unit(i: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.full((rows, PIXELS), float(i), np.float32)
    return x, x + 1


_slots: SharedSlots | None = None  # the slots of the "reused shared slots" row (inherited by the fork)


def pickled(i: int, rows: int, slot: int | None) -> tuple:
    return _unit(i, rows)


def shared(i: int, rows: int, slot: int | None) -> tuple:
    return tuple(catalog_reading._shared(a) for a in _unit(i, rows))


def slotted(i: int, rows: int, slot: int | None) -> tuple:
    put = _slots.writer(slot, catalog_reading._large)
    return tuple(put(a) for a in _unit(i, rows))


def _received(arrays: tuple, slots: SharedSlots | None) -> list[np.ndarray]:
    if slots is None:
        return [a.numpy() if isinstance(a, torch.Tensor) else a for a in arrays]
    view = slots.reader(list(arrays))
    return [view(a) for a in arrays]


def measure(fn, units: int, rows: int, slots: SharedSlots | None = None) -> tuple[float, float, float]:
    """(receiver CPU ms, wall ms, page faults) per unit, two units in flight."""
    global _slots
    _slots = slots
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        pool.submit(pickled, 0, rows, None).result()  # the worker started and warm
        r0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
        total, pending, submitted = 0.0, deque(), 0
        while submitted < units or pending:
            while submitted < units and len(pending) < 2:
                slot = slots.free_slot(busy=(s for s, _ in pending)) if slots is not None else None
                pending.append((slot, pool.submit(fn, submitted, rows, slot)))
                submitted += 1
            arrays = _received(pending.popleft()[1].result(), slots)
            total += sum(float(a.sum()) for a in arrays)
            del arrays
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt
    return cpu * 1e3 / units, wall * 1e3 / units, faults / units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--rows", type=int, default=256, help="spectra per unit")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    names = ("pickled", "fresh shared memory", "reused shared slots")
    best = {name: (np.inf,) * 3 for name in names}
    for _ in range(a.rounds):
        for name, fn in zip(names, (pickled, shared, slotted), strict=True):
            slots = SharedSlots.create(3) if fn is slotted else None
            if fn is slotted and slots is None:
                raise SystemExit("this platform has no memfd_create: no shared slots to measure")
            try:
                got = measure(fn, a.units, a.rows, slots)
            finally:
                if slots is not None:
                    slots.close()
            best[name] = tuple(min(b, g) for b, g in zip(best[name], got, strict=True))
    mb = 2 * a.rows * PIXELS * 4 / 1e6
    print(f"# Reading process → network's process: {a.units} units of 2 × {a.rows} × {PIXELS} float32 "
          f"({mb:.1f} MB), fork, two units in flight, 1 torch thread, best of {a.rounds}\n")
    print("| transfer | receiver CPU per unit | wall per unit | receiver page faults per unit |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall, faults) in best.items():
        print(f"| {name} | {cpu:.2f} ms | {wall:.2f} ms | {faults:.0f} |")
    fresh, slots = best["fresh shared memory"][0], best["reused shared slots"][0]
    print(f"\nreceiver CPU, pickled / fresh shared memory: {best['pickled'][0] / fresh:.1f}x; "
          f"fresh shared memory / reused shared slots: {fresh / slots:.1f}x")


if __name__ == "__main__":
    main()
