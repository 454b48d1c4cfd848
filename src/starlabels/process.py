"""Process-wide tuning, opt-in: the library never calls this; the ``starlabels`` CLI does.

:func:`tune_process` changes state that belongs to the whole process (glibc's allocator), which a
library must not do behind its caller's back — a host application (a notebook, a Dask worker, a
web service) may have its own memory policy. Scripts and services that own their process and want
the CLI's speed call it once at start-up::

    import starlabels
    starlabels.tune_process()

Effect measured side by side in ``bench/predict_throughput.py`` (its "allocator" line) and
``bench/throughput.py``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["tune_process"]

_TUNED = False


def tune_process() -> bool:
    """Keep freed memory in the process (glibc ``mallopt``) so activations are reused, not re-faulted.

    By default glibc hands every large freed block (≥ 128 KB–32 MB) back to the OS, so each forward
    pass page-faults its activation buffers in again; on virtual machines that can cost more than
    the convolutions. Raising ``M_MMAP_THRESHOLD``/``M_TRIM_THRESHOLD`` to 1 GiB keeps them for
    reuse; the peak memory is unchanged (the process keeps its high-water mark, which it no longer
    returns to the OS). Process-global and irreversible: call it only in a process you own.
    ``STARLABELS_NO_MALLOC_TUNING=1`` makes it a no-op. Returns True when applied (glibc only).
    """
    global _TUNED
    if _TUNED:
        return True
    if os.environ.get("STARLABELS_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        return False
    _TUNED = bool(ok)
    return _TUNED
