"""Format constants and header reading of the starlabels HDF5 spectra dataset (the format is
described in :mod:`starlabels.data.hdf5`): built-in grid names, the stored grid, file checks and
:func:`read_dataset_info`. Writing: :mod:`starlabels.data.hdf5_writer`; reading rows:
:class:`starlabels.data.hdf5.SpectraDataset`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from starlabels.core import Grid, find_grid
from starlabels.core import available as available_instruments
from starlabels.core import get as get_instrument
from starlabels.errors import InputDataError, InputFileError

__all__ = [
    "CHUNK_CACHE_BYTES", "FORMAT", "FORMAT_VERSION", "META_DTYPES", "READABLE_VERSIONS", "SPECTRA",
    "DatasetInfo", "as_grid", "instrument_of", "read_dataset_info",
]

FORMAT = "starlabels-spectra"
FORMAT_VERSION = 2
#: Versions this module reads (1: ``grid`` attribute is a built-in grid's name).
READABLE_VERSIONS = (1, 2)
SPECTRA = ("flux", "error", "bitmask")
#: dtype of the standard meta columns; others are inferred from the first values given.
META_DTYPES: dict[str, str] = {
    "apogee_id": "str", "source": "str", "group": "str",
    "ra": "float64", "dec": "float64", "snr": "float64", "vhelio": "float64",
    "nvisits": "int32",
}
#: chunk cache of each HDF5 dataset opened for reading (bytes); a chunk of 16 apStar rows is ~0.5 MB.
CHUNK_CACHE_BYTES = 16 * 2**20


def as_grid(grid: Grid | str) -> Grid:
    """A :class:`~starlabels.core.Grid` from a Grid or the name of a built-in/registered grid
    (``"apstar"``, ``"aspcap"``, ``"payne"``, ``"boss"``, or an instrument's name for its native grid)."""
    if isinstance(grid, Grid):
        return grid
    if not isinstance(grid, str):
        raise InputDataError(f"grid must be a starlabels.core.Grid or a grid name, got {type(grid).__name__}")
    key = grid.strip().lower()
    names = []
    for inst_name in available_instruments():
        inst = get_instrument(inst_name)
        if key == inst.name.lower():
            return inst.grid
        for g in inst.grids():
            if g.name.lower() == key:
                return g
            names.append(g.name)
    raise InputDataError(f"unknown grid {grid!r}; known grids: {sorted(set(names))}")


def instrument_of(grid: Grid) -> str:
    """Name of the built-in/registered instrument ``grid`` belongs to, else ``"custom"``."""
    hit = find_grid(grid)
    return hit[0].name if hit is not None else "custom"


def _check_format(f: h5py.File, path: str | Path) -> None:
    """Raise :class:`InputFileError` unless ``f`` is a dataset of a readable format version with
    the spectra, ``wavelength`` and the required attributes."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise InputFileError(path, f"not a starlabels spectra dataset (format attribute {fmt!r})")
    version = int(f.attrs.get("format_version", -1))
    if version not in READABLE_VERSIONS:
        raise InputFileError(
            path, f"dataset format_version {version}; this starlabels reads versions "
                  f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    for name in (*SPECTRA, "wavelength"):
        if name not in f:
            raise InputFileError(path, f"dataset has no {name!r} array")
    for key in ("grid", "label_names", "label_units", "n_rows"):
        if key not in f.attrs:
            raise InputFileError(path, f"dataset has no {key!r} attribute")


def _stored_grid(f: h5py.File, path: str | Path) -> Grid:
    """The file's grid: JSON ``Grid.to_dict()`` (version 2) or a built-in grid name (version 1),
    checked against the pixel count and the ``wavelength`` array."""
    raw = f.attrs["grid"]
    if isinstance(raw, bytes):
        raw = raw.decode()
    raw = str(raw)
    if raw.lstrip().startswith("{"):
        try:
            grid = Grid.from_dict(json.loads(raw))
        except (ValueError, InputDataError) as exc:
            raise InputFileError(path, f"attribute 'grid' is not a valid grid ({exc})") from None
    else:
        try:
            grid = as_grid(raw)
        except InputDataError as exc:
            raise InputFileError(path, f"attribute 'grid': {exc}") from None
    n_pixels = int(f["flux"].shape[1])
    if grid.n_pixels != n_pixels:
        raise InputFileError(path, f"grid {grid.describe()} does not match the {n_pixels}-pixel spectra")
    wave = np.asarray(f["wavelength"][:], np.float64)
    if wave.shape != grid.wavelength.shape or not np.allclose(wave, grid.wavelength, rtol=1e-9, atol=0):
        raise InputFileError(path, f"the 'wavelength' array does not match the stored grid {grid.describe()}")
    return grid


def _json_attr(f: h5py.File, key: str, path: str | Path) -> Any:
    """The JSON-decoded file attribute ``key`` (InputFileError naming ``path`` when not JSON)."""
    raw = f.attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise InputFileError(path, f"attribute {key!r} is not valid JSON ({exc})") from exc


@dataclass(frozen=True)
class DatasetInfo:
    """Summary of a dataset file, read without touching the spectra."""

    path: str
    n_rows: int
    n_pixels: int
    grid: Grid
    label_names: tuple[str, ...]
    label_units: tuple[str, ...]
    meta_names: tuple[str, ...]
    created: str
    preprocessing: Any
    format_version: int
    compression: str | None
    stored_rows: int = field(default=0)
    instrument: str = "custom"

    @property
    def grid_name(self) -> str:
        return self.grid.name


def read_dataset_info(path: str | Path) -> DatasetInfo:
    """Header information of a dataset file; raises :class:`InputFileError` for bad/old files."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "dataset file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from exc
    with f:
        _check_format(f, path)
        n_rows = int(f.attrs["n_rows"])
        stored = int(f["flux"].shape[0])
        if n_rows > stored:
            raise InputFileError(path, f"n_rows attribute {n_rows} exceeds the {stored} stored rows")
        grid = _stored_grid(f, path)
        inst = f.attrs.get("instrument")
        if isinstance(inst, bytes):
            inst = inst.decode()
        return DatasetInfo(
            path=str(path),
            n_rows=n_rows,
            n_pixels=int(f["flux"].shape[1]),
            grid=grid,
            instrument=str(inst) if inst is not None else instrument_of(grid),
            label_names=tuple(_json_attr(f, "label_names", path)),
            label_units=tuple(_json_attr(f, "label_units", path)),
            meta_names=tuple(sorted(f["meta"].keys())) if "meta" in f else (),
            created=str(f.attrs.get("created", "")),
            preprocessing=_json_attr(f, "preprocessing", path) if "preprocessing" in f.attrs else None,
            format_version=int(f.attrs["format_version"]),
            compression=f["flux"].compression,
            stored_rows=stored,
        )
