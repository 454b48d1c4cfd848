"""Atomic file writes: a file appears complete under its name or not at all.

Used by every writer that must not leave a half-written file after a crash or a kill (apStar and
mwm writers, the catalog's unit markers, the coverage and domain-shift estimators).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from starlabels.utils import give_default_permissions

__all__ = ["atomic_write", "atomic_write_hdulist"]


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], None], overwrite: bool = False
) -> Path:
    """Write a file through ``write(fh)`` into a temporary file in the same folder, then os.replace.

    An existing file is untouched unless the new one was written completely (and ``overwrite`` is
    True); a failed write leaves no temporary file behind; the file gets the usual umask permissions.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p}: exists; pass overwrite=True to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        give_default_permissions(tmp)  # mkstemp makes it owner-only (0600)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def atomic_write_hdulist(hdul: Any, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write an astropy HDUList to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: hdul.writeto(fh, output_verify="exception"), overwrite)
