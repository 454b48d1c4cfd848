"""NumPy array files (``.npy``/``.npz``) that configure a model: masks, windows, bitmasks.

Every loader of such a file needs the same three refusals, each an
:class:`~starlabels.errors.InputFileError` naming the file and what it was meant to hold: the file is
missing, it is not a readable ``.npy``/``.npz`` (text, truncated, or pickled objects — pickles are
never loaded), or it does not hold one value per pixel. What the values must be (boolean, 0/1,
integer bits) and which grid they are on is the caller's to check. Element windows, which several
layers read (the censored network, The Cannon, astroNN imports, the report's figures), have their
reader here too: :func:`load_element_windows_npz`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from starlabels.errors import InputFileError

__all__ = ["load_array_file", "load_element_windows_npz", "load_pixel_vector"]


def load_array_file(path: str | Path, what: str) -> np.ndarray | np.lib.npyio.NpzFile:
    """``np.load(path, allow_pickle=False)``: an array (``.npy``) or an open ``NpzFile`` (``.npz``;
    use it as a context manager). ``what`` names the file's role; errors read ``"<path>: <what>: <problem>"``.

    Raises :class:`InputFileError` when the file does not exist or cannot be read as either."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, f"{what}: file does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFileError(p, f"{what}: not a readable .npy/.npz file ({exc})") from None


def load_pixel_vector(path: str | Path, what: str) -> np.ndarray:
    """A ``.npy`` file holding one value per pixel → its (P,) array, dtype as stored.

    Raises :class:`InputFileError` (naming ``path`` and ``what``) when the file is missing, unreadable,
    an ``.npz`` archive, or holds anything but a 1-D array."""
    loaded = load_array_file(path, what)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded.close()
        raise InputFileError(path, f"{what}: must be a .npy file holding one array; this is an .npz archive")
    if loaded.ndim != 1:
        raise InputFileError(path, f"{what}: must be one value per pixel, a 1-D array; it holds shape "
                                   f"{loaded.shape}")
    return loaded


def load_element_windows_npz(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """An ``.npz`` with ``windows`` (E, P) bool (or 0/1) and ``elements`` (E,) names (e.g. APOGEE's
    ASPCAP DR14 windows, ``starlabels.instruments.get("apogee").element_windows["dr14"].path()``) →
    ((E, P) bool, E names as str).

    Raises :class:`InputFileError` (naming ``path``) when the file is missing, unreadable, a ``.npy``,
    lacks either array, or the two disagree in E."""
    what = "element windows"
    loaded = load_array_file(path, what)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InputFileError(path, f"{what}: needs an .npz file with arrays 'windows' and 'elements'; "
                                   "this is one .npy array")
    with loaded as archive:
        if "windows" not in archive.files or "elements" not in archive.files:
            raise InputFileError(path, f"{what}: needs arrays 'windows' and 'elements', has {archive.files}")
        try:
            windows = np.asarray(archive["windows"]).astype(bool)
            elements = [str(e) for e in archive["elements"]]
        except (OSError, ValueError) as exc:  # a corrupt member, or one holding pickled objects
            raise InputFileError(path, f"{what}: not a readable .npz file ({exc})") from None
    if windows.ndim != 2 or windows.shape[0] != len(elements):
        raise InputFileError(path, f"{what}: 'windows' of shape {windows.shape} do not match "
                                   f"{len(elements)} element names")
    return windows, elements
