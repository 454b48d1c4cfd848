"""inference.prefetch: order, bounded read-ahead, overlap, errors and early exit."""

from __future__ import annotations

import threading
import time

import pytest

from starlabels.inference.prefetch import prefetched


def test_order_and_completeness():
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetched([], depth=1)) == []


def test_read_ahead_is_bounded_by_depth():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    it = prefetched(source(), depth=2)
    assert next(it) == 0
    time.sleep(0.2)  # let the producer run as far as it may
    # consumed 1; the queue holds ≤ 2; one more may be produced and waiting to be put
    assert len(produced) <= 1 + 2 + 1
    it.close()


def test_producer_runs_while_the_consumer_works():
    """While the consumer still holds item 0, the producer makes item 1 (no timing asserted: the
    consumer waits for that event; a sequential implementation would never set it)."""
    second_made = threading.Event()

    def source():
        yield 0
        second_made.set()
        yield 1

    it = prefetched(source(), depth=2)
    assert next(it) == 0
    assert second_made.wait(timeout=30)
    assert list(it) == [1]


def test_errors_surface_at_their_item():
    def bad():
        yield 1
        yield 2
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for x in prefetched(bad()):
            got.append(x)
    assert got == [1, 2]


def test_early_exit_stops_the_thread():
    before = threading.active_count()

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    for x in prefetched(endless(), depth=2):
        if x == 5:
            break
    time.sleep(0.1)
    assert threading.active_count() == before


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        list(prefetched([1], depth=0))
