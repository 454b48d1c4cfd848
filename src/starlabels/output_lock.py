"""An exclusive lock on a run's output (``<OUT>.lock``): two runs never write the same output.

Used by catalog runs (:mod:`starlabels.inference.catalog`), ``ingest`` and training. ``fcntl.flock``
is released by the kernel when its holder dies, even by SIGKILL, so a crashed run never blocks its
resume; a live holder makes the second run fail at once with a clear error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlabels.errors import StarlabelsError


def lock_path(out: str | os.PathLike) -> Path:
    """``<out>.lock``."""
    return Path(str(out) + ".lock")


class OutputLock:
    """An exclusive lock on a run's output (``<OUT>.lock``, ``fcntl.flock``), held while the run
    writes. A second run on the same output fails at once with :class:`StarlabelsError` naming the
    holder's pid; the kernel drops the lock when the holder dies (even by SIGKILL), so a crashed
    run never blocks its resume. Where ``fcntl`` is missing (Windows) no lock is taken.

    ``same_process_ok``: a lock held by this very process (e.g. an abandoned, interrupted
    :class:`~starlabels.training.trainer.Trainer` still referenced in a notebook) does not refuse
    the new run; other processes are still refused.
    """

    def __init__(self, out: str | os.PathLike, what: str = "catalog run", *, same_process_ok: bool = False):
        self.path = lock_path(out)
        self.what = what
        self.same_process_ok = same_process_ok
        self._fh: Any = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            if self.same_process_ok and holder == str(os.getpid()):
                return self
            raise StarlabelsError(
                f"{self.path}: another {self.what} (pid {holder}) is writing this output; wait for it "
                "to finish or choose another output (a crashed run releases the lock by itself)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self.path.unlink(missing_ok=True)
            self._fh.close()  # closing releases the flock
            self._fh = None
