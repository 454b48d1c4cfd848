"""The starlabels HDF5 spectra dataset: an appendable writer and a lazy torch ``Dataset``.

Format (``format = "starlabels-spectra"``, ``format_version = 2``; see docs/DESIGN.md):

==================  =====================  ===============================================
path                shape, dtype           meaning
==================  =====================  ===============================================
``flux``, ``error`` (N, P) float32         spectra on grid ``attrs["grid"]`` (flux units as
                                           read, e.g. 1e-17 erg/s/cm²/Å for apStar)
``bitmask``         (N, P) int32           the instrument's pixel flags (APOGEE_PIXMASK, …)
``labels``          (N, L) float32         label values in ``label_units``; MISSING (-9999)
``label_errors``    (N, L) float32         1-σ errors, same units; MISSING where absent
``wavelength``      (P,) float64           vacuum wavelength, Å
``meta/<name>``     (N,)                   ``apogee_id``, ``source``, ``group`` (str),
                                           ``ra``, ``dec`` (deg), ``snr``, ``vhelio`` (km/s)
                                           (float64), ``nvisits`` (int32), any others given
==================  =====================  ===============================================

File attributes: ``grid`` (the wavelength grid itself, JSON of
:meth:`starlabels.core.Grid.to_dict`: name, segments, checksum and the wavelengths or their
log-linear solution), ``instrument`` (e.g. ``"apogee"``, ``"boss"``, ``"custom"``),
``label_names``, ``label_units`` (JSON lists), ``created`` (ISO time), ``preprocessing`` (JSON,
``"null"`` for spectra as read) and ``n_rows``: the number of *complete* rows.
:class:`DatasetWriter` resizes every dataset, writes the rows, then updates ``n_rows`` and
flushes, so a write interrupted part-way leaves ``n_rows`` at the last complete append; rows
beyond it are dropped when the file is reopened for writing and ignored when read.
With no labels (L = 0) the ``labels``/``label_errors`` datasets are not stored (HDF5 cannot chunk
a zero-width axis) and read back as (n, 0) arrays.

Version 1 files (written before grids were data) store ``grid`` as the name of a built-in APOGEE
grid (``"apstar"``, ``"aspcap"``, ``"payne"``); they are read as that grid. A version 2 file whose
stored grid does not match its own checksum, its ``wavelength`` array or its pixel count is refused
(:class:`~starlabels.errors.InputFileError` naming the file).

Row-chunked storage (``chunk_rows`` rows per chunk, default 16), gzip level 4 with the byte
shuffle filter. Measured on 256 synthetic apStar spectra (flux, error, bitmask at S/N 100): gzip-4
+ shuffle 38 % of the raw size (gzip-1 39 %, gzip-6 38 %, gzip-4 without shuffle 49 %, lzf +
shuffle 42 %, lzf alone 59 %); whole-file reads took 0.7–1.0 ms per spectrum for both gzip-4 and
lzf with shuffle on a busy 2-core machine. gzip is chosen because every HDF5 tool reads it (lzf
needs h5py); pass ``compression="lzf"`` for faster writes.

This module reads rows (:class:`SpectraDataset`, :class:`SpectraBatch`); the writer is in
:mod:`starlabels.data.hdf5_writer`, the format constants and :func:`read_dataset_info` in
:mod:`starlabels.data.hdf5_format` (both re-exported here, where users import them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from starlabels.constants import MISSING
from starlabels.core import Grid
from starlabels.data.hdf5_chunks import read_row_range
from starlabels.data.hdf5_format import (
    CHUNK_CACHE_BYTES,
    FORMAT,
    FORMAT_VERSION,
    META_DTYPES,
    READABLE_VERSIONS,
    SPECTRA,
    DatasetInfo,
    as_grid,
    instrument_of,
    read_dataset_info,
)
from starlabels.data.hdf5_writer import DatasetWriter
from starlabels.errors import InputDataError, InputFileError

__all__ = [
    "CHUNK_CACHE_BYTES", "FORMAT", "FORMAT_VERSION", "META_DTYPES", "READABLE_VERSIONS", "SPECTRA",
    "DatasetInfo", "DatasetWriter", "SpectraBatch", "SpectraDataset", "as_grid", "instrument_of",
    "read_dataset_info",
]


@dataclass
class SpectraBatch:
    """Rows read from a dataset. Shapes: flux/error/bitmask (n, P), labels/label_errors (n, L),
    rows (n,) file row numbers."""

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    labels: np.ndarray
    label_errors: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


try:  # a torch Dataset when torch is importable (it always is for starlabels)
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[assignment,misc]


class SpectraDataset(_TorchDataset):  # type: ignore[misc]
    """Lazy, row-indexed view of a dataset file; a ``torch.utils.data.Dataset``.

    The HDF5 file is opened on first access in each process (DataLoader workers reopen it;
    the handle is not pickled) and only the rows asked for are read.

    ``dataset[i]`` is a dict of torch tensors: ``flux``, ``error`` (P,) float32, ``bitmask`` (P,)
    int32, ``labels``, ``label_errors`` (L,) float32 and ``row`` (the file row); batched reads
    through the DataLoader use ``__getitems__`` (one HDF5 read per batch). For numpy access use
    :meth:`read` and :meth:`iter_chunks`.

    Parameters
    ----------
    path
        Dataset file.
    rows
        Optional subset of file rows (e.g. a split); positions ``0 … len-1`` index into it.
    """

    def __init__(self, path: str | Path, rows: Sequence[int] | np.ndarray | None = None):
        self.path = Path(path)
        self.info = read_dataset_info(self.path)
        n = self.info.n_rows
        if rows is None:
            self.rows = np.arange(n, dtype=np.int64)
        else:
            r = np.asarray(rows)
            if r.dtype.kind not in "iu" or r.ndim != 1:
                raise InputDataError(f"rows must be a 1-D integer array, got {r.dtype} {r.shape}")
            r = r.astype(np.int64)
            if r.size and (r.min() < 0 or r.max() >= n):
                raise InputDataError(f"rows out of range for a dataset of {n} rows")
            self.rows = r
        self._file: h5py.File | None = None
        self._pid: int | None = None

    # -- properties ----------------------------------------------------------------------------

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.info.label_names

    @property
    def label_units(self) -> tuple[str, ...]:
        return self.info.label_units

    @property
    def grid(self) -> Grid:
        """The spectra's wavelength grid (:class:`~starlabels.core.Grid`)."""
        return self.info.grid

    @property
    def instrument(self) -> str:
        return self.info.instrument

    @property
    def n_pixels(self) -> int:
        return self.info.n_pixels

    @property
    def preprocessing(self) -> Any:
        return self.info.preprocessing

    @property
    def meta_names(self) -> tuple[str, ...]:
        return self.info.meta_names

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"SpectraDataset({str(self.path)!r}, {len(self)} rows, grid={self.grid.name!r}, "
                f"labels={list(self.label_names)})")

    # -- file handle ---------------------------------------------------------------------------

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            try:
                self._file = h5py.File(self.path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)
            except OSError as exc:
                raise InputFileError(self.path, f"cannot open dataset ({exc})") from exc
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._file.id.valid and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> SpectraDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    # -- reading -------------------------------------------------------------------------------

    def _read_rows(self, name: str, file_rows: np.ndarray) -> np.ndarray:
        """Rows ``file_rows`` (any order, repeats allowed) of dataset ``name``, one HDF5 read.

        String datasets come back as ``str`` arrays."""
        ds = self._h5()[name]
        is_str = h5py.check_string_dtype(ds.dtype) is not None
        if is_str:
            ds = ds.asstr()
        if file_rows.size == 0:
            return np.zeros((0, *ds.shape[1:]), dtype=str if is_str else ds.dtype)
        uniq, inverse = np.unique(file_rows, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo <= 2 * len(uniq) + 16:  # dense: one contiguous slab (decoded outside the GIL)
            block = ds[lo:hi] if is_str else read_row_range(ds, lo, hi)
            out = block if len(uniq) == hi - lo else block[uniq - lo]
        else:
            out = ds[uniq]  # h5py fancy indexing needs increasing unique indices
        inverse = inverse.ravel()
        if len(inverse) != len(uniq) or np.any(inverse != np.arange(len(uniq))):  # unsorted or repeated rows
            out = out[inverse]
        return out.astype(str) if is_str else out

    def _positions(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            return self.rows[index]
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != self.rows.shape:
                raise InputDataError(f"boolean index of shape {idx.shape} for {len(self)} rows")
            return self.rows[idx]
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} rows")
        return self.rows[idx]

    def read(self, index: Any = None) -> SpectraBatch:
        """Rows at positions ``index`` of this dataset (int array, slice or bool mask; all if None)."""
        file_rows = self.rows if index is None else self._positions(index)
        L = len(self.label_names)
        f = self._h5()
        if L and "labels" in f:
            labels = self._read_rows("labels", file_rows)
            label_errors = self._read_rows("label_errors", file_rows)
        else:
            labels = np.full((len(file_rows), L), MISSING, np.float32)
            label_errors = labels.copy()
        return SpectraBatch(
            flux=self._read_rows("flux", file_rows),
            error=self._read_rows("error", file_rows),
            bitmask=self._read_rows("bitmask", file_rows),
            labels=labels,
            label_errors=label_errors,
            rows=file_rows.copy(),
        )

    def iter_chunks(self, chunk_rows: int = 256) -> Iterator[SpectraBatch]:
        """Consecutive batches of at most ``chunk_rows`` rows, in this dataset's order."""
        chunk_rows = max(1, int(chunk_rows))
        for start in range(0, len(self), chunk_rows):
            yield self.read(slice(start, start + chunk_rows))

    def meta(self, name: str, index: Any = None) -> np.ndarray:
        """(n,) values of ``meta/<name>`` for positions ``index`` (all rows if None); str as str."""
        f = self._h5()
        if "meta" not in f or name not in f["meta"]:
            raise KeyError(f"{self.path}: no meta column {name!r}; have {list(self.meta_names)}")
        file_rows = self.rows if index is None else self._positions(index)
        return self._read_rows(f"meta/{name}", file_rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        import torch

        b = self.read(np.asarray(indices, dtype=np.int64))
        flux, error = torch.from_numpy(b.flux), torch.from_numpy(b.error)
        bitmask = torch.from_numpy(b.bitmask)
        labels, label_errors = torch.from_numpy(b.labels), torch.from_numpy(b.label_errors)
        return [
            {"flux": flux[k], "error": error[k], "bitmask": bitmask[k], "labels": labels[k],
             "label_errors": label_errors[k], "row": int(b.rows[k])}
            for k in range(len(b))
        ]
