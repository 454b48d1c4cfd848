"""Training data access: labels in memory, spectra read on demand (:class:`TrainingData`).

:class:`TrainingData` holds the labels, label errors and groups of every row in memory — (N, L)
floats, small — and reads spectra lazily, a block of rows at a time, either from in-memory arrays
(:meth:`TrainingData.from_arrays`) or from one or more starlabels HDF5 datasets
(:meth:`TrainingData.from_hdf5`, :class:`starlabels.data.hdf5.SpectraDataset`), so a file larger
than memory can be trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError, InputFileError

__all__ = ["FLOAT", "Reader", "TrainingData", "as_str_array"]

#: spectra read from a source are float32; errors of rejected pixels stay finite
FLOAT = np.float32
#: rows further apart than this start a new HDF5 read
_RUN_GAP = 32

Reader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


class TrainingData:
    """Rows of spectra for training: labels in memory, spectra read on demand.

    Parameters
    ----------
    reader
        ``reader(rows)`` → ``(flux, error, bitmask)`` for a sorted int64 array of row numbers:
        flux (n, P) float32, error (n, P) float32 or None, bitmask (n, P) int or None.
    labels, label_errors
        (N, L) float32 in physical units, ``MISSING`` (or NaN) where absent.
    label_names, label_units
        length-L lists (allStar names, e.g. ``"TEFF"``; units e.g. ``"K"``).
    n_pixels
        P, spectrum length as stored.
    groups
        (N,) str or None (e.g. ``"payne"``, ``"mdwarf"``, ``"yso"``).
    grid
        Wavelength grid of the stored spectra (a :class:`~starlabels.core.Grid` or a built-in
        grid's name such as ``"apstar"``, ``"boss"``), or None when unknown.
    preprocessing
        ``PreprocessConfig.to_dict()`` the stored spectra already went through, or None (raw).
    files
        Source files (provenance).
    random_access
        True when any row can be read cheaply (in-memory arrays): enables ``shuffle="full"``.
    """

    def __init__(
        self,
        reader: Reader,
        labels: np.ndarray,
        label_names: Sequence[str],
        n_pixels: int,
        *,
        label_errors: np.ndarray | None = None,
        label_units: Sequence[str] | None = None,
        groups: np.ndarray | None = None,
        grid: Any = None,
        preprocessing: dict[str, Any] | None = None,
        files: Sequence[str] = (),
        random_access: bool = False,
    ) -> None:
        labels = np.asarray(labels, dtype=FLOAT)
        if labels.ndim != 2 or labels.shape[1] != len(label_names):
            raise InputDataError(
                f"labels must be (N, {len(label_names)}) for label_names {list(label_names)}, "
                f"got shape {labels.shape}"
            )
        n = labels.shape[0]
        if label_errors is None:
            label_errors = np.zeros_like(labels)
        label_errors = np.asarray(label_errors, dtype=FLOAT)
        if label_errors.shape != labels.shape:
            raise InputDataError(f"label_errors shape {label_errors.shape} != labels shape {labels.shape}")
        if groups is not None:
            groups = as_str_array(groups)
            if groups.shape != (n,):
                raise InputDataError(f"groups must have shape ({n},), got {groups.shape}")
        self._reader = reader
        self.labels = labels
        self.label_errors = label_errors
        self.label_names = [str(s) for s in label_names]
        self.label_units = [str(u) for u in label_units] if label_units is not None else [""] * len(
            self.label_names
        )
        self.groups = groups
        self.n_pixels = int(n_pixels)
        if grid is not None:
            from starlabels.data.hdf5_format import as_grid

            grid = as_grid(grid)
        self.grid = grid
        if self.grid is not None and self.grid.n_pixels != self.n_pixels:
            raise InputDataError(
                f"spectra have {self.n_pixels} pixels but grid {self.grid.describe()} has "
                f"{self.grid.n_pixels}"
            )
        self.preprocessing = preprocessing
        self.files = [str(f) for f in files]
        self.random_access = bool(random_access)
        #: number of rows of every :meth:`read` call (lets tests check that reads stay bounded)
        self.read_log: list[int] = []

    @property
    def n_rows(self) -> int:
        """N, the number of rows."""
        return int(self.labels.shape[0])

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Spectra of ``rows`` (sorted, unique int64): ``(flux, error, bitmask)``, (n, P) each."""
        rows = np.asarray(rows, dtype=np.int64)
        self.read_log.append(len(rows))
        flux, error, bitmask = self._reader(rows)
        flux = np.asarray(flux, dtype=FLOAT)
        if flux.shape != (len(rows), self.n_pixels):
            raise InputDataError(
                f"reader returned flux of shape {flux.shape}, expected {(len(rows), self.n_pixels)}"
            )
        return flux, (None if error is None else np.asarray(error, dtype=FLOAT)), bitmask

    @classmethod
    def from_arrays(
        cls,
        flux: np.ndarray,
        labels: np.ndarray,
        label_names: Sequence[str],
        *,
        error: np.ndarray | None = None,
        bitmask: np.ndarray | None = None,
        label_errors: np.ndarray | None = None,
        label_units: Sequence[str] | None = None,
        groups: Sequence[str] | np.ndarray | None = None,
        grid: Any = None,
        preprocessing: dict[str, Any] | None = None,
    ) -> TrainingData:
        """In-memory data: flux/error/bitmask (N, P), labels/label_errors (N, L) physical units."""
        flux = np.asarray(flux, dtype=FLOAT)
        if flux.ndim != 2:
            raise InputDataError(f"flux must be 2-D (N, n_pixels), got shape {flux.shape}")
        for name, arr in (("error", error), ("bitmask", bitmask)):
            if arr is not None and np.shape(arr) != flux.shape:
                raise InputDataError(f"{name} shape {np.shape(arr)} != flux shape {flux.shape}")
        err = None if error is None else np.asarray(error, dtype=FLOAT)
        bm = None if bitmask is None else np.asarray(bitmask)

        def reader(rows: np.ndarray):
            return flux[rows], (None if err is None else err[rows]), (None if bm is None else bm[rows])

        labels = np.asarray(labels, dtype=FLOAT)
        if labels.shape[0] != flux.shape[0]:
            raise InputDataError(f"{flux.shape[0]} spectra but {labels.shape[0]} label rows")
        return cls(
            reader, labels, label_names, flux.shape[1], label_errors=label_errors,
            label_units=label_units, groups=None if groups is None else np.asarray(groups),
            grid=grid, preprocessing=preprocessing, random_access=True,
        )

    @classmethod
    def from_hdf5(
        cls,
        paths: str | Path | Sequence[str | Path],
        label_names: Sequence[str],
        *,
        group_column: str | None = None,
    ) -> TrainingData:
        """Lazy data from one or more starlabels HDF5 datasets (same grid and preprocessing).

        Only the label columns named in ``label_names`` (and their errors) and the group column
        are read into memory; spectra are read by row when training asks for them.
        """
        from starlabels.data.hdf5 import SpectraDataset

        if isinstance(paths, str | Path):
            paths = [paths]
        paths = [Path(p) for p in paths]
        if not paths:
            raise InputDataError("no HDF5 dataset given")
        datasets = [SpectraDataset(p) for p in paths]
        names = [str(n).upper() for n in label_names]
        first = datasets[0]
        labels, errors, groups = [], [], []
        units: list[str] = []
        for p, ds in zip(paths, datasets, strict=True):
            if not ds.grid.same_as(first.grid):
                raise InputFileError(
                    p, f"grid {ds.grid.describe()} differs from {paths[0]}'s {first.grid.describe()}"
                )
            if ds.preprocessing != first.preprocessing:
                raise InputFileError(p, f"its preprocessing differs from {paths[0]}'s")
            have = [str(n).upper() for n in ds.label_names]
            missing = [n for n in names if n not in have]
            if missing:
                raise InputFileError(p, f"has no label(s) {missing}; it has {list(ds.label_names)}")
            idx = [have.index(n) for n in names]
            lab, err = _read_label_columns(ds, idx)
            labels.append(lab)
            errors.append(err)
            units = units or [ds.label_units[i] for i in idx]
            if group_column is not None:
                try:
                    groups.append(as_str_array(ds.meta(group_column)))
                except KeyError:
                    raise InputFileError(p, f"has no meta/{group_column} column") from None
        offsets = np.cumsum([0] + [len(ds) for ds in datasets])

        def reader(rows: np.ndarray):
            fl, er, bm = [], [], []
            for k, ds in enumerate(datasets):
                a, b = np.searchsorted(rows, [offsets[k], offsets[k + 1]])
                if a == b:
                    continue
                local = rows[a:b] - offsets[k]
                # one read per run of nearby rows: h5py reads a contiguous slab much faster than
                # a scattered selection spanning several chunks (~5x on a 2-chunk block)
                for run in np.split(local, np.flatnonzero(np.diff(local) > _RUN_GAP) + 1):
                    batch = ds.read(run)
                    fl.append(batch.flux)
                    er.append(batch.error)
                    bm.append(batch.bitmask)
            if not fl:
                p = first.n_pixels
                return np.zeros((0, p), FLOAT), np.zeros((0, p), FLOAT), np.zeros((0, p), np.int32)
            if len(fl) == 1:
                return fl[0], er[0], bm[0]
            return np.concatenate(fl), np.concatenate(er), np.concatenate(bm)

        return cls(
            reader, np.concatenate(labels), names, first.n_pixels,
            label_errors=np.concatenate(errors), label_units=units,
            groups=np.concatenate(groups) if group_column is not None else None,
            grid=first.grid, preprocessing=first.preprocessing,
            files=[str(Path(p).resolve()) for p in paths], random_access=False,
        )


def _read_label_columns(ds: Any, idx: list[int], step: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(N, len(idx)) labels and label errors of a SpectraDataset, without touching the spectra.

    Reads the ``labels``/``label_errors`` datasets (DESIGN.md HDF5 format) in row blocks.
    """
    import h5py

    n = len(ds)
    out_l = np.full((n, len(idx)), MISSING, FLOAT)
    out_e = np.full((n, len(idx)), MISSING, FLOAT)
    if not idx:
        return out_l, out_e
    with h5py.File(ds.path, "r") as f:
        if "labels" not in f:
            return out_l, out_e
        for a in range(0, n, step):
            rows = ds.rows[a:a + step]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            out_l[a:a + len(rows)] = f["labels"][lo:hi][rows - lo][:, idx]
            out_e[a:a + len(rows)] = f["label_errors"][lo:hi][rows - lo][:, idx]
    return out_l, out_e


def as_str_array(values: Any) -> np.ndarray:
    """(N,) values (bytes, objects or str) as a numpy str array (bytes decoded as UTF-8)."""
    a = np.asarray(values)
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8")
    elif a.dtype.kind == "O":
        a = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in a.tolist()])
    return a.astype(str)
