"""Element windows of the censored network (:class:`~starlabels.models.censored.CensoredBayesianCNN`):
(E, P) boolean pixel masks, one row per element, read from .npz files, stored as JSON-friendly pixel
ranges, matched to abundance labels by element name and moved onto a network's grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.errors import InputDataError

__all__ = [
    "WindowsLike", "check_element_labels", "element_key", "ranges_to_windows",
    "resolve_windows", "windows_on_grid", "windows_to_ranges",
]

#: any form of windows :class:`~starlabels.models.censored.CensoredBayesianCNN` takes: (E, P) bool
#: np.ndarray or torch.Tensor, an .npz path, or a ``{"n_pixels", "ranges"}`` dict
WindowsLike = Any

def element_key(name: str) -> str:
    """Normalised element key for matching: upper case, ``_FE``/``_H`` suffix and ``[X/Fe]`` removed.

    ``"MG_FE"``, ``"Mg"``, ``"mg_h"`` and ``"[Mg/Fe]"`` all give ``"MG"``.
    """
    key = str(name).strip().upper().replace("[", "").replace("]", "")
    for suffix in ("/FE", "/H", "_FE", "_H"):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def windows_to_ranges(windows: np.ndarray) -> list[list[list[int]]]:
    """(E, P) bool → per element a list of half-open pixel ranges ``[start, end)`` (JSON-friendly)."""
    w = np.asarray(windows, dtype=bool)
    out = []
    for row in w:
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        out.append([[int(a), int(b)] for a, b in zip(starts, ends, strict=True)])
    return out


def ranges_to_windows(ranges: Sequence[Sequence[Sequence[int]]], n_pixels: int) -> np.ndarray:
    """Inverse of :func:`windows_to_ranges`: (E, n_pixels) bool."""
    w = np.zeros((len(ranges), int(n_pixels)), dtype=bool)
    for i, rr in enumerate(ranges):
        for a, b in rr:
            if not 0 <= a <= b <= n_pixels:
                raise InputDataError(f"window range [{a}, {b}) outside 0..{n_pixels}")
            w[i, a:b] = True
    return w


def check_element_labels(
    element_names: Sequence[str], label_names: Sequence[str], n_main_labels: int
) -> None:
    """Raise :class:`InputDataError` unless the abundance labels ``label_names[n_main_labels:]``
    are the elements of the windows, by name and in the same order (``MG_FE`` ↔ ``Mg``): a window
    paired with another element's label would train silently wrong. The message names the
    config keys to change (``[model.kwargs] element_names`` / ``[data] label_names``)."""
    abundances = [str(n) for n in label_names[n_main_labels:]]
    elements = [str(n) for n in element_names]
    if [element_key(n) for n in abundances] != [element_key(n) for n in elements]:
        raise InputDataError(
            f"the censored network's element windows {elements} do not match its abundance labels "
            f"{abundances} (label_names after the first n_main_labels={n_main_labels}) by name and "
            "order; list [model.kwargs] element_names in the order of [data] label_names"
        )


def resolve_windows(
    windows: WindowsLike, element_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Any accepted ``windows`` form + optional names → ((E, P) bool array, E names)."""
    if isinstance(windows, (str, Path)):
        from starlabels.io.array_file import load_element_windows_npz  # (importing starlabels.io: ~50 ms)

        all_w, all_names = load_element_windows_npz(windows)
        if element_names is None:
            return all_w, all_names
        index = {element_key(n): i for i, n in enumerate(all_names)}
        rows = []
        for n in element_names:
            if element_key(n) not in index:
                raise InputDataError(f"element {n!r} not in {windows} (has {all_names})")
            rows.append(index[element_key(n)])
        return all_w[rows], [all_names[i] for i in rows]
    if isinstance(windows, dict):
        try:
            w = ranges_to_windows(windows["ranges"], int(windows["n_pixels"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"windows dict needs 'n_pixels' and 'ranges': {exc}") from None
    elif isinstance(windows, torch.Tensor):
        w = windows.detach().cpu().numpy().astype(bool)
    else:
        w = np.asarray(windows)
        if w.dtype != bool and not np.isin(w, (0, 1)).all():
            raise InputDataError("windows must be a boolean (n_elements, n_pixels) mask")
        w = w.astype(bool)
    if w.ndim != 2:
        raise InputDataError(f"windows must be (n_elements, n_pixels), got shape {w.shape}")
    if element_names is None:
        raise InputDataError("element_names is required when windows is an array")
    names = [str(n) for n in element_names]
    if len(names) != w.shape[0]:
        raise InputDataError(f"{len(names)} element_names for {w.shape[0]} windows")
    return w, names


def windows_on_grid(
    windows: WindowsLike, element_names: Sequence[str] | None, grid: Any, instrument: str = "apogee"
) -> tuple[np.ndarray, list[str]]:
    """Element windows moved onto the network's ``grid`` (a :class:`~starlabels.core.Grid`).

    ``windows`` is anything :class:`CensoredBayesianCNN` takes, or the name of one of the
    ``instrument``'s element-window files (APOGEE: ``"dr14"``, the ASPCAP windows). Windows already
    of the grid's length are taken as they are; otherwise they are on the instrument's grid of their
    length (APOGEE's ASPCAP windows on the gap-free grid) and are moved onto ``grid``, which must
    hold that grid or be held by it (e.g. onto the apStar grid of a raw-flux network: gaps False).
    Returns ((E, P) bool, E element names).
    """
    from starlabels.core import get
    from starlabels.preprocess.grids import convert

    inst = get(instrument)
    if isinstance(windows, str) and windows in inst.element_windows and not Path(windows).exists():
        windows = inst.element_windows[windows].path()
    w, names = resolve_windows(windows, element_names)
    if w.shape[1] == grid.n_pixels:
        return w, names
    own = [g for g in inst.grids() if g.n_pixels == w.shape[1]]
    if not own:
        raise InputDataError(f"element windows of {w.shape[1]} pixels fit neither the network's grid "
                             f"{grid.describe()} nor a grid of {inst.name!r}")
    try:
        return convert(w, own[0], grid, fill=0, axis=1).astype(bool), names
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
