"""Overlap reading/preprocessing with compute: run an iterator one or more items ahead in a thread.

:func:`prefetched` wraps any iterator (units of a catalog run read from HDF5 or FITS files,
preprocessed batches) so that item k+1 is produced in a background thread while the caller computes
on item k. Order is preserved, at most ``depth`` items wait in the queue (plus the one being produced:
bounded memory), an exception in the producer is re-raised in the caller at the item where it
happened, and leaving the loop early (``break``, an exception in the caller, ``close()``) stops the
thread. No process-wide state is touched.

The overlap is only as good as the GIL allows: NumPy's large array operations and torch kernels
release it, but Python code in the producer (FITS header walks, bookkeeping) holds it between the
consumer's kernels. Catalog runs on Linux therefore read in a process instead
(:mod:`starlabels.inference.catalog_reading`); this thread is their reader elsewhere, and
:func:`starlabels.predict` uses it to prepare its next chunk of in-memory spectra.

    for chunk in prefetched(read_chunks(path), depth=2):
        predict(chunk)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items`` in order, produced up to ``depth`` (≥ 1) items ahead in a thread."""
    if int(depth) < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    box: queue.Queue = queue.Queue(maxsize=int(depth))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                box.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # re-raised in the consumer
            put(_Raised(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="starlabels-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value = box.get()
            if value is _DONE:
                return
            if isinstance(value, _Raised):
                raise value.exc
            yield value
    finally:
        stop.set()
        thread.join()
