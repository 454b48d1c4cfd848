"""Exceptions raised by starlabels. Every message names the file (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class StarlabelsError(Exception):
    """Base class for all starlabels errors."""


class InputFileError(StarlabelsError, ValueError):
    """An input file is missing, unreadable, truncated, or not what it claims to be."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:  # pickled as its two arguments (e.g. from a reading process)
        return (type(self), (self.path, self.problem))


class InputDataError(StarlabelsError, ValueError):
    """In-memory input has the wrong shape, grid, dtype or values (e.g. NaN-only spectra)."""


class ModelFormatError(StarlabelsError):
    """A model folder is missing files, or was written by an incompatible version."""
