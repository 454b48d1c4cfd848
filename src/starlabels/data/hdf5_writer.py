"""Appendable writer of the starlabels HDF5 spectra dataset (:class:`DatasetWriter`; the format is
described in :mod:`starlabels.data.hdf5`): creates a file atomically, resumes an existing one after
its last complete append, and validates every block before anything is written."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from starlabels.constants import MISSING
from starlabels.core import Grid
from starlabels.data.hdf5_format import (
    FORMAT,
    FORMAT_VERSION,
    META_DTYPES,
    SPECTRA,
    as_grid,
    instrument_of,
    read_dataset_info,
)
from starlabels.errors import InputDataError, InputFileError

__all__ = ["DatasetWriter"]

_STR = h5py.string_dtype("utf-8")


def _default_units(name: str) -> str:
    n = name.upper()
    if n.endswith("_ERR"):
        n = n[:-4]
    if n == "TEFF":
        return "K"
    if n in ("LOGG", "FE_H", "M_H", "ALPHA_M") or n.endswith("_FE") or n.endswith("_H"):
        return "dex"
    return ""


def _fill_value(kind: str) -> Any:
    if kind == "str":
        return ""
    k = np.dtype(kind).kind
    if k == "f":
        return np.nan
    if k == "b":
        return False
    return -1


def _meta_kind(name: str, values: np.ndarray) -> str:
    if name in META_DTYPES:
        return META_DTYPES[name]
    if values.dtype.kind in "USO":
        return "str"
    if values.dtype.kind == "b":
        return "bool"
    if values.dtype.kind in "iu":
        return "int64"
    return "float64"


def _as_meta(name: str, values: Any, n: int, kind: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim == 0:
        a = np.repeat(a.reshape(1), n)
    if a.shape != (n,):
        raise InputDataError(f"meta[{name!r}] has shape {a.shape}, expected ({n},)")
    if kind == "str":
        if a.dtype.kind == "S":
            a = np.char.decode(a, "utf-8")
        return np.asarray([str(x) for x in a.tolist()], dtype=object)
    return a.astype(kind)


def _h5_dtype(kind: str):
    return _STR if kind == "str" else np.dtype(kind)


class DatasetWriter:
    """Append spectra (and labels, meta) to a starlabels HDF5 dataset; a context manager.

    Opening an existing file resumes it: the grid (by checksum) and label names must match, and
    rows beyond the last complete append (``attrs["n_rows"]``) are dropped. A different or
    unreadable existing file raises :class:`InputFileError` and is left untouched, unless
    ``overwrite=True``.

    Parameters
    ----------
    path
        Output ``.h5`` file.
    n_pixels
        P, pixels per spectrum; must equal the grid's length (``None``: the grid's).
    grid
        The spectra's wavelength grid: a :class:`~starlabels.core.Grid` (e.g.
        ``starlabels.instruments.get("boss").grid``) or a built-in grid's name (``"apstar"``,
        ``"aspcap"``, ``"payne"``, ``"boss"``); stored in the file.
    label_names
        Label columns, e.g. ``["TEFF", "LOGG", "FE_H"]`` (may be empty).
    label_units
        Units beside each name (default: K for TEFF, dex for LOGG and abundances, else "").
    preprocessing
        JSON-serialisable description of how the spectra were processed; ``None`` = as read.
    instrument
        Instrument name stored beside the grid (default: the instrument the grid belongs to,
        ``"custom"`` for a grid of none).
    compression, compression_opts, shuffle, chunk_rows
        HDF5 storage of the spectra (default gzip level 4 with shuffle, 16 rows per chunk).
    """

    def __init__(
        self,
        path: str | Path,
        n_pixels: int | None,
        grid: Grid | str,
        label_names: Sequence[str] = (),
        label_units: Sequence[str] | None = None,
        *,
        preprocessing: Any = None,
        instrument: str | None = None,
        compression: str | None = "gzip",
        compression_opts: int | None = 4,
        shuffle: bool = True,
        chunk_rows: int = 16,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        g = as_grid(grid)
        if n_pixels is not None and int(n_pixels) != g.n_pixels:
            raise InputDataError(f"grid {g.describe()} has {g.n_pixels} pixels, n_pixels={n_pixels}")
        self.grid = g
        self.n_pixels = g.n_pixels
        self.instrument = str(instrument) if instrument else instrument_of(g)
        self.label_names = tuple(str(n) for n in label_names)
        if label_units is None:
            label_units = [_default_units(n) for n in self.label_names]
        if len(label_units) != len(self.label_names):
            raise InputDataError(
                f"{len(label_units)} label_units for {len(self.label_names)} label_names"
            )
        self.label_units = tuple(str(u) for u in label_units)
        self._storage = {
            "compression": compression,
            "compression_opts": compression_opts if compression == "gzip" else None,
            "shuffle": bool(shuffle) if compression else False,
        }
        self.chunk_rows = max(1, int(chunk_rows))
        self._meta_kinds: dict[str, str] = {}
        self.dropped_rows = 0

        if self.path.exists() and not overwrite:
            self._file = self._resume()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._create(preprocessing)

    # -- opening -------------------------------------------------------------------------------

    def _create(self, preprocessing: Any) -> h5py.File:
        try:
            json_pre = json.dumps(preprocessing)
        except TypeError as exc:
            raise InputDataError(f"preprocessing is not JSON-serialisable: {exc}") from exc
        # build the empty file under a temporary name, then move it into place, so a failure
        # here never leaves a half-made dataset at ``path``
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        f = h5py.File(tmp, "w")
        try:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["grid"] = json.dumps(self.grid.to_dict())
            f.attrs["instrument"] = self.instrument
            f.attrs["label_names"] = json.dumps(list(self.label_names))
            f.attrs["label_units"] = json.dumps(list(self.label_units))
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["preprocessing"] = json_pre
            f.attrs["n_rows"] = 0
            P, c = self.n_pixels, self.chunk_rows
            for name, dtype in (("flux", "float32"), ("error", "float32"), ("bitmask", "int32")):
                f.create_dataset(name, shape=(0, P), maxshape=(None, P), chunks=(c, P), dtype=dtype,
                                 **self._storage)
            L = len(self.label_names)
            if L:
                for name in ("labels", "label_errors"):
                    f.create_dataset(name, shape=(0, L), maxshape=(None, L), chunks=(max(c, 256), L),
                                     dtype="float32", fillvalue=MISSING)
            f.create_dataset("wavelength", data=self.grid.wavelength)
            f.create_group("meta")
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        f.close()
        os.replace(tmp, self.path)
        return h5py.File(self.path, "r+")

    def _resume(self) -> h5py.File:
        info = read_dataset_info(self.path)  # InputFileError for anything not a dataset
        problems = []
        if not info.grid.same_as(self.grid):
            problems.append(f"grid {info.grid.describe()}, asked {self.grid.describe()}")
        if info.label_names != self.label_names:
            problems.append(f"label_names {list(info.label_names)}, asked {list(self.label_names)}")
        if problems:
            raise InputFileError(self.path, "existing dataset differs: " + "; ".join(problems))
        try:
            f = h5py.File(self.path, "r+")
        except OSError as exc:
            raise InputFileError(self.path, f"cannot open dataset for appending ({exc})") from exc
        self.label_units = info.label_units
        n = info.n_rows
        for name in self._row_datasets(f):
            if f[name].shape[0] > n:
                self.dropped_rows = max(self.dropped_rows, f[name].shape[0] - n)
                f[name].resize(n, axis=0)
        for name, ds in f["meta"].items():
            kind = "str" if h5py.check_string_dtype(ds.dtype) else ds.dtype.name
            self._meta_kinds[name] = kind
        f.flush()
        return f

    @staticmethod
    def _row_datasets(f: h5py.File) -> list[str]:
        names = [n for n in (*SPECTRA, "labels", "label_errors") if n in f]
        return names + [f"meta/{m}" for m in f["meta"]]

    # -- writing -------------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Number of complete rows in the file."""
        return int(self._file.attrs["n_rows"])

    def _label_block(self, values: Any, n: int, what: str) -> np.ndarray:
        L = len(self.label_names)
        if values is None:
            return np.full((n, L), MISSING, np.float32)
        a = np.array(values, dtype=np.float64)
        if a.ndim == 1 and L == 1:
            a = a[:, None]
        if a.shape != (n, L):
            raise InputDataError(f"{what} has shape {a.shape}, expected ({n}, {L})")
        a[~np.isfinite(a)] = MISSING
        return a.astype(np.float32)

    def append(
        self,
        flux: Any,
        error: Any,
        bitmask: Any = None,
        labels: Any = None,
        label_errors: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Append n rows; returns the new number of rows.

        ``flux``, ``error`` (n, P) float; ``bitmask`` (n, P) int (zeros if None); ``labels``,
        ``label_errors`` (n, L) in ``label_units`` (MISSING if None; NaN stored as MISSING);
        ``meta`` ``{name: (n,) array or scalar}``. A meta column not given in this call is
        filled with "" / NaN / -1; a new column is back-filled the same way for earlier rows.
        All arrays are validated before anything is written.
        """
        flux = np.asarray(flux)
        if flux.ndim == 1:
            flux = flux[None]
        n = flux.shape[0]
        if flux.shape != (n, self.n_pixels):
            raise InputDataError(f"flux has shape {flux.shape}, expected (n, {self.n_pixels})")
        error = np.asarray(error)
        error = error[None] if error.ndim == 1 else error
        if error.shape != flux.shape:
            raise InputDataError(f"error has shape {error.shape}, flux {flux.shape}")
        if bitmask is None:
            bitmask = np.zeros(flux.shape, np.int32)
        bitmask = np.asarray(bitmask)
        bitmask = bitmask[None] if bitmask.ndim == 1 else bitmask
        if bitmask.shape != flux.shape:
            raise InputDataError(f"bitmask has shape {bitmask.shape}, flux {flux.shape}")
        if bitmask.dtype.kind not in "iub":
            raise InputDataError(f"bitmask must be integer, got {bitmask.dtype}")
        lab = self._label_block(labels, n, "labels")
        lab_err = self._label_block(label_errors, n, "label_errors")
        meta_arrays: dict[str, tuple[str, np.ndarray]] = {}
        for name, values in (meta or {}).items():
            v = np.asarray(values)
            kind = self._meta_kinds.get(name) or _meta_kind(name, v if v.ndim else v.reshape(1))
            meta_arrays[name] = (kind, _as_meta(name, values, n, kind))
        if n == 0:
            return self.n_rows

        f = self._file
        n0 = self.n_rows
        n1 = n0 + n
        for name, kind in self._meta_kinds.items():  # known columns this call does not give
            if name not in meta_arrays:
                meta_arrays[name] = (kind, _as_meta(name, _fill_value(kind), n, kind))
        for name, (kind, _) in meta_arrays.items():
            if name not in f["meta"]:
                f["meta"].create_dataset(
                    name, shape=(n0,), maxshape=(None,), chunks=(1024,), dtype=_h5_dtype(kind),
                    fillvalue=None if kind == "str" else _fill_value(kind),
                )
                if kind == "str" and n0:
                    f["meta"][name][:] = np.full(n0, "", dtype=object)
                self._meta_kinds[name] = kind
        blocks = {"flux": flux.astype(np.float32), "error": error.astype(np.float32),
                  "bitmask": bitmask.astype(np.int32)}
        if self.label_names:
            blocks["labels"] = lab
            blocks["label_errors"] = lab_err
        for name, (_, arr) in meta_arrays.items():
            blocks[f"meta/{name}"] = arr
        for name, arr in blocks.items():
            ds = f[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = arr
        f.attrs["n_rows"] = n1  # the commit point
        f.flush()
        return n1

    @property
    def meta_names(self) -> tuple[str, ...]:
        """Names of the meta columns written so far."""
        return tuple(sorted(self._meta_kinds))

    def read_meta(self, name: str) -> np.ndarray:
        """(n_rows,) values of a meta column written so far (str columns as Python str)."""
        if name not in self._file["meta"]:
            raise KeyError(f"no meta column {name!r}; have {sorted(self._file['meta'])}")
        ds = self._file["meta"][name]
        n = self.n_rows
        if self._meta_kinds.get(name) == "str":
            return ds.asstr()[:n].astype(str)
        return ds[:n]

    def close(self) -> None:
        if self._file is not None and self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
