"""Overlap reading/preprocessing with compute: run an iterator one or more items ahead in a thread.

:func:`prefetched` wraps any iterator (chunks read from HDF5, FITS files of a folder, preprocessed
batches) so that item k+1 is produced in a background thread while the caller computes on item k.
NumPy, h5py/astropy I/O and torch kernels release the GIL for their heavy parts, so the producer and
the network really run at the same time on two cores. Order is preserved, at most ``depth`` items
are held (bounded memory), an exception in the producer is re-raised in the caller at the item where
it happened, and leaving the loop early (``break``, an exception in the caller, ``close()``) stops the
thread. No process-wide state is touched.

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
