"""Reference files (continuum masks, element windows, emulators) found by name, never bundled.

Reference data are third-party files a user has (e.g. the ASPCAP DR17 continuum mask). The library
finds one by name, in order: an existing path given by the caller; each folder of
``$STARLABELS_REFERENCE_DIR`` (``os.pathsep``-separated) and its sub-folders one level down; the
download cache (``$STARLABELS_CACHE``, else ``~/.cache/starlabels``) and its ``reference/`` folder.
A missing file raises ``InputFileError`` listing where it looked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from starlabels.errors import InputFileError

__all__ = ["ReferenceFile", "find_reference", "reference_folders"]


@dataclass(frozen=True)
class ReferenceFile:
    """A named reference file: ``filename``, the ``grid`` (subgrid name) it lives on, the ``.npz``
    ``key`` holding the array (None: the only array), and where it comes from (``source``)."""

    filename: str
    grid: str
    key: str | None = None
    source: str = ""

    def path(self, search: str | os.PathLike[str] | None = None) -> Path:
        """The file's path (see :func:`find_reference`)."""
        return find_reference(self.filename if search is None else search, default_name=self.filename)


def reference_folders() -> list[Path]:
    """Folders searched for reference files, in order (see the module docstring)."""
    out: list[Path] = []
    for item in os.environ.get("STARLABELS_REFERENCE_DIR", "").split(os.pathsep):
        if item:
            root = Path(item).expanduser()
            out.append(root)
            if root.is_dir():
                out.extend(sorted(p for p in root.iterdir() if p.is_dir()))
    cache = Path(os.environ.get("STARLABELS_CACHE") or Path.home() / ".cache" / "starlabels").expanduser()
    out += [cache, cache / "reference"]
    return out


def find_reference(name: str | os.PathLike[str], default_name: str | None = None) -> Path:
    """Path of a reference file given as a path or a bare file name (see the module docstring).

    ``name`` may be a folder, in which case ``default_name`` is looked up inside it.
    """
    p = Path(name).expanduser()
    if p.is_dir() and default_name:
        p = p / default_name
    if p.is_file():
        return p
    looked = [str(p)]
    if p.name == str(name) or not p.parent.parts:
        for folder in reference_folders():
            cand = folder / p.name
            looked.append(str(cand))
            if cand.is_file():
                return cand
    raise InputFileError(
        p, "reference file not found; pass its path, or set STARLABELS_REFERENCE_DIR to the folder "
        f"holding it (looked in: {', '.join(looked)})"
    )
