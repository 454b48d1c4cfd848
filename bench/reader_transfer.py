"""What handing a unit from the reading process to the network's process costs the network's process.

    python bench/reader_transfer.py [--units 32] [--rows 256]

A catalog run's reading process (:mod:`starlabels.inference.catalog_reading`) sends each prepared unit
— for APOGEE Net, float32 network input and errors, rows × 8575 pixels each — to the network's
process. Side by side in one run, the same arrays, one forked worker
(:class:`concurrent.futures.ProcessPoolExecutor`), units submitted ahead:

* ``pickled``: the arrays pickled into the pipe, received and unpickled (copied) by the receiver;
* ``shared memory``: the arrays as torch tensors in shared memory (what the reading process sends:
  ``catalog_reading._in_shared_memory``), pickled as file descriptors and mapped by the receiver.

Printed per unit: the receiving process's CPU time (all its threads: the executor's result thread
receives and unpickles) and wall time, and the receiver's minor page faults. Each unit's arrays are
summed on arrival (a read of every byte, as the network would). Best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

PIXELS = 8575


def _unit(i: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.full((rows, PIXELS), float(i), np.float32)
    return x, x + 1


def pickled(i: int, rows: int) -> tuple:
    return _unit(i, rows)


def shared(i: int, rows: int) -> tuple:
    from starlabels.inference import catalog_reading

    return tuple(catalog_reading._shared(a) for a in _unit(i, rows))


def measure(fn, units: int, rows: int) -> tuple[float, float, float]:
    """(receiver CPU ms, wall ms, page faults) per unit."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(fn, 0, rows).result()  # the worker started and warm
        r0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
        total = 0.0
        for future in [pool.submit(fn, i, rows) for i in range(units)]:
            for a in future.result():
                total += float(np.asarray(a).sum())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt
    return cpu * 1e3 / units, wall * 1e3 / units, faults / units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--rows", type=int, default=256, help="spectra per unit")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    best = {"pickled": (np.inf,) * 3, "shared memory": (np.inf,) * 3}
    for _ in range(a.rounds):
        for name, fn in (("pickled", pickled), ("shared memory", shared)):
            got = measure(fn, a.units, a.rows)
            best[name] = tuple(min(b, g) for b, g in zip(best[name], got, strict=True))
    mb = 2 * a.rows * PIXELS * 4 / 1e6
    print(f"# Reading process → network's process: {a.units} units of 2 × {a.rows} × {PIXELS} float32 "
          f"({mb:.1f} MB), fork, best of {a.rounds}\n")
    print("| transfer | receiver CPU per unit | wall per unit | receiver page faults per unit |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall, faults) in best.items():
        print(f"| {name} | {cpu:.2f} ms | {wall:.2f} ms | {faults:.0f} |")
    print(f"\nreceiver CPU, pickled / shared memory: {best['pickled'][0] / best['shared memory'][0]:.1f}x")


if __name__ == "__main__":
    main()
