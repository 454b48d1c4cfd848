"""Hydrogen Brackett lines and element windows, to annotate spectra and sensitivity curves.

- :func:`brackett_wavelength` and :data:`BRACKETT_LINES` — vacuum wavelengths of the H-band
  Brackett series (Rydberg formula);
- :func:`load_element_windows`, :func:`element_window_mask` — per-element pixel windows (APOGEE:
  ASPCAP DR14) on any grid that holds or is held by the windows' grid (astroNN §4.4 marks them on
  the ∂label/∂flux curves of :func:`starlabels.evaluation.diagnostics.sensitivity`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.evaluation.label_text import element_name

__all__ = [
    "BRACKETT_LINES",
    "RYDBERG_H",
    "brackett_wavelength",
    "element_of",
    "element_window_mask",
    "element_windows_file",
    "load_element_windows",
]

#: Rydberg constant for hydrogen (reduced-mass corrected), cm⁻¹.
RYDBERG_H = 109677.5834


def brackett_wavelength(n_upper: int | np.ndarray) -> np.ndarray | float:
    """Vacuum wavelength (Å) of the hydrogen Brackett line n_upper → 4 (Rydberg formula).

    Br11 (n = 11) is 16811.1 Å, Br19 15264.7 Å; agreement with NIST is better than 0.1 Å.
    """
    n = np.asarray(n_upper, dtype=float)
    if np.any(n <= 4):
        raise InputDataError("Brackett lines need an upper level n > 4")
    lam = 1e8 / (RYDBERG_H * (1.0 / 16.0 - 1.0 / n**2))
    return float(lam) if lam.ndim == 0 else lam


#: Brackett lines in the APOGEE H band (15100–17000 Å): name → vacuum wavelength in Å.
BRACKETT_LINES: dict[str, float] = {
    f"Br{n}": float(brackett_wavelength(n)) for n in range(11, 22)
    if 15100.0 <= brackett_wavelength(n) <= 17000.0
}


def element_windows_file(instrument: str = "apogee") -> Path:
    """The instrument's element-window file (APOGEE: the ASPCAP DR14 windows on its gap-free grid),
    found where :func:`starlabels.core.find_reference` looks (``$STARLABELS_REFERENCE_DIR`` and its
    sub-folders one level down, the download cache); :class:`~starlabels.errors.InputFileError`
    naming the file and those places when it is in none."""
    from starlabels.core import get

    inst = get(instrument)
    if not inst.element_windows:
        raise InputDataError(f"instrument {inst.name!r} defines no element windows; pass a windows file")
    ref = next(iter(inst.element_windows.values()))
    return Path(ref.path())


def load_element_windows(path: str | Path | None = None, instrument: str = "apogee") -> dict[str, np.ndarray]:
    """Element windows: element name (e.g. ``"Mg"``) → (P,) bool mask on the grid of the file
    (APOGEE's DR14 ASPCAP windows: the gap-free ASPCAP grid).

    The file is an ``.npz`` with ``windows`` (n_elements, P) bool and ``elements`` names; default:
    the instrument's (:func:`element_windows_file`).
    """
    from starlabels.io.array_file import load_element_windows_npz

    windows, names = load_element_windows_npz(path if path is not None else element_windows_file(instrument))
    return dict(zip(names, windows, strict=True))


def element_of(label: str) -> str:
    """The element an abundance label measures: ``"MG_FE"`` → ``"Mg"``, ``"FE_H"`` → ``"Fe"``."""
    head = label.upper().split("_")[0]
    return element_name(head)


def element_window_mask(
    label_or_element: str, windows: Mapping[str, np.ndarray] | None = None, *,
    grid: Any = "aspcap", instrument: str = "apogee",
) -> np.ndarray:
    """Bool mask of an element's windows on ``grid`` (a :class:`~starlabels.core.Grid`, a grid
    name such as ``"aspcap"``/``"apstar"``/``"payne"``, or a built-in grid's pixel count), which must
    hold the windows' grid or be held by it. The windows' own grid is the ``instrument``'s grid of
    their length. ``label_or_element`` is a label (``"MG_FE"``) or an element."""
    from starlabels.core import get
    from starlabels.preprocess.grids import convert, get_grid

    windows = load_element_windows(instrument=instrument) if windows is None else windows
    name = label_or_element if label_or_element in windows else element_of(label_or_element)
    lookup = {k.upper(): k for k in windows}
    if name.upper() not in lookup:
        raise InputDataError(f"no element windows for {label_or_element!r}; have {sorted(windows)}")
    mask = np.asarray(windows[lookup[name.upper()]], dtype=bool)
    inst = get(instrument)
    own = [g for g in inst.grids() if g.n_pixels == mask.shape[0]]
    if not own:
        raise InputDataError(f"element windows of {mask.shape[0]} pixels fit no grid of {inst.name!r} "
                             f"({[g.describe() for g in inst.grids()]})")
    try:
        return convert(mask, own[0], get_grid(grid), fill=0).astype(bool)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
