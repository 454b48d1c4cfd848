"""Catalog inputs: files and folders → units of work → blocks of spectra on the model's grid.

Inputs are spectrum files of any format :func:`starlabels.io.read_spectra` reads (mwmStar/mwmVisit
DR19/DR20, apStar DR14–17 and SDSS-V, aspcapStar, apVisit, BOSS spec, tables), recognised by their
content when they are read, folders of them (walked recursively by
:func:`starlabels.io.read.list_files`; every file that is not a spectrum is listed as skipped with
the reason, never silently ignored) and starlabels HDF5 datasets (``.h5``/``.hdf5``).

Every spectrum of a file becomes one catalog row when it can go onto the model's grid
(:mod:`starlabels.inference.grid_input`: same grid, the model's pixels cut from a wider grid, or
resampled when ``resample`` is given). Otherwise it is listed in the skipped file as
``FILE[HDU]`` with the reason (another grid and no ``resample``, no wavelength in common with the
model's grid — e.g. the BOSS spectra of an mwmStar file given to an APOGEE model —, continuum-
normalised aspcapStar flux for a raw-flux model), and the run goes on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError, StarlabelsError
from starlabels.inference import grid_input

HDF5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
#: Spectrum files per unit of work (a unit: one read, one predict call, one parts file; the grain of
#: resuming and distribution). Each unit costs milliseconds of bookkeeping besides its spectra
#: (predict call, catalog rows, parts file, done-marker), which 64 apStar files per unit (the
#: former default) made a fifth of a point-estimate run's time: ``bench/end_to_end.py --unit-sizes
#: 64,256,1024``, table in bench/results/throughput.md. A unit's spectra are held in memory, two
#: units at a time: files with many visits (mwmVisit) may call for fewer (``--files-per-unit``).
FILES_PER_UNIT = 256
#: HDF5 rows per unit of work.
ROWS_PER_UNIT = 1024
#: Per-row identity columns, in catalog order (SDSS_ID -1 and strings "" when a file lacks them).
ID_COLUMNS: tuple[str, ...] = ("SDSS_ID", "APOGEE_ID", "TELESCOPE", "HDU", "RA", "DEC", "SNR", "SOURCE")


@dataclass(frozen=True)
class InputItem:
    """One input: a spectrum file (``kind`` ``"spectra"``) or rows [``start``, ``stop``) of an HDF5
    dataset (``kind`` ``"hdf5"``)."""

    kind: str
    path: str
    start: int = 0
    stop: int = 0

    def record(self) -> dict[str, Any]:
        """The item as a JSON-ready dict (what ``dataclasses.asdict`` gives, without its per-field
        deep copies: a unit's done-marker lists hundreds of items)."""
        return {"kind": self.kind, "path": self.path, "start": self.start, "stop": self.stop}


@dataclass(frozen=True)
class Unit:
    """A unit of work: consecutive items, its position ``index`` and a stable ``key``."""

    index: int
    items: tuple[InputItem, ...]

    @functools.cached_property
    def key(self) -> str:
        """12 hex digits of the SHA-1 of the items as sorted-key JSON (the text of ``asdict`` of each:
        parts folders written before keep their names), computed once per unit."""
        text = json.dumps([i.record() for i in self.items], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"unit-{self.index:06d}-{self.key}"

    def seed(self, seed: int) -> int:
        """The unit's own seed (same wherever the unit runs)."""
        h = hashlib.sha1(f"{int(seed)}:{self.key}".encode()).hexdigest()
        return int(h[:15], 16)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files and folders into input items (HDF5 rows not split yet), without opening a file.

    Folders are walked (:func:`starlabels.io.read.list_files`); ``.h5``/``.hdf5`` files are HDF5
    items, every other file a spectrum item whose format is recognised when it is read (a file that
    is not a spectrum is then listed as skipped with the reason, like an unreadable one). Planning a
    survey folder thus costs a directory walk (~3 µs per file: ``bench/list_folder.py``), not a
    header read per file (2 ms per apStar file with astropy). Returns ``(items, skipped)``;
    ``skipped`` lists (path, reason) for inputs that do not exist and folders without files.
    """
    from starlabels.io.read import list_files

    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            skipped.append((str(p), "does not exist"))
            continue
        found = sorted(list_files([p]), key=str)
        if p.is_dir() and not found:
            skipped.append((str(p), "folder holds no files"))
        items += [InputItem("hdf5" if f.suffix.lower() in HDF5_SUFFIXES else "spectra", str(f))
                  for f in found]
    return items, skipped


def plan_units(
    items: Sequence[InputItem], *, files_per_unit: int = FILES_PER_UNIT, rows_per_unit: int = ROWS_PER_UNIT
) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Cut items into units: runs of up to ``files_per_unit`` spectrum files, and ``rows_per_unit``
    row ranges of each HDF5 file. Unreadable HDF5 files go to ``skipped``."""
    from starlabels.data.hdf5_format import read_dataset_info

    units: list[Unit] = []
    skipped: list[tuple[str, str]] = []
    pending: list[InputItem] = []

    def flush() -> None:
        if pending:
            units.append(Unit(len(units), tuple(pending)))
            pending.clear()

    for it in items:
        if it.kind == "hdf5":
            flush()
            try:
                n = read_dataset_info(it.path).n_rows
            except InputFileError as exc:
                skipped.append((it.path, exc.problem))
                continue
            for a in range(0, n, max(1, rows_per_unit)):
                units.append(Unit(len(units), (InputItem("hdf5", it.path, a, min(n, a + rows_per_unit)),)))
        else:
            pending.append(it)
            if len(pending) >= files_per_unit:
                flush()
    flush()
    return units, skipped


@dataclass
class Block:
    """Spectra of one kind on one grid, ready for :func:`starlabels.predict`: ``kind`` ``"raw"`` or
    ``"pre"`` (network input), per-row ``meta`` dicts (:data:`ID_COLUMNS` + ``_ORDER``);
    ``prepared`` the same spectra as :class:`~starlabels.inference.prepared_spectra.PreparedSpectra`
    once prepared for a network (then the arrays are dropped)."""

    kind: str
    grid: Any
    flux: list[np.ndarray] = field(default_factory=list)
    error: list[np.ndarray] = field(default_factory=list)
    bitmask: list[np.ndarray] = field(default_factory=list)
    resampled: list[np.ndarray] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)
    prepared: Any = None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "problem", None) or str(exc) or type(exc).__name__


def _sdss_id(v: Any) -> int:
    try:
        return int(v) if v is not None and str(v).strip() != "" else -1
    except (TypeError, ValueError):
        return -1


def _meta_row(meta: dict[str, Any], source: str, order: int) -> dict[str, Any]:
    def num(key: str) -> float:
        try:
            return float(meta.get(key, np.nan))
        except (TypeError, ValueError):
            return np.nan

    return {
        "SDSS_ID": _sdss_id(meta.get("SDSS_ID")), "APOGEE_ID": str(meta.get("APOGEE_ID", "") or ""),
        "TELESCOPE": str(meta.get("TELESCOPE", "") or ""), "HDU": str(meta.get("HDU", "") or ""),
        "RA": num("RA"), "DEC": num("DEC"), "SNR": num("SNR"), "SOURCE": source, "_ORDER": order,
    }


def _overlaps(wavelength: np.ndarray, grid: Any) -> bool:
    return bool(wavelength[0] <= grid.wavelength[-1] and wavelength[-1] >= grid.wavelength[0])


def _block_key(kind: str, grid: Any) -> tuple[str, str]:
    """A unit's blocks are keyed by kind and grid."""
    return kind, grid.checksum


def _block(blocks: dict[tuple[str, str], Block], kind: str, grid: Any) -> Block:
    return blocks.setdefault(_block_key(kind, grid), Block(kind, grid))


class _Rows:
    """A raw block's rows, copied in as each file is read into arrays made once per unit (flux and
    errors in ``dtype``), so that no file's own arrays outlive its reading. A unit holding every
    file's float64 spectra until it is done leaves ~50 MB per 256 files that the allocator may return
    and fault in again, unit after unit (~13,000 page faults per unit).

    The bitmask rows are kept in the narrowest of int16, int32, int64 that holds every value so far
    (a :class:`~starlabels.io.Spectrum` widens them to int64; APOGEE's PIXMASK uses bits 0–14, BOSS's
    masks bits up to 28): 4.4 MB per 256 apStar spectra instead of 17.6 MB. The reading process's
    peak memory per 256-file unit drops from 57 to 44 MB, memory the network on the other core would
    otherwise share its cache with. A value the current dtype cannot hold widens the rows so far
    first: no bit is ever dropped."""

    def __init__(self, capacity: int, n_pixels: int, dtype: Any):
        self.flux = np.empty((capacity, n_pixels), dtype)
        self.error = np.empty((capacity, n_pixels), dtype)
        self.bitmask = np.empty((capacity, n_pixels), np.int16)
        self.n = 0

    def append(self, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | int) -> None:
        """Copy (k, P) rows in (flux and errors cast as ``np.concatenate(..., dtype=)`` casts them;
        the bitmask's values exactly)."""
        k = flux.shape[0]
        if self.n + k > self.flux.shape[0]:
            grown = max(2 * self.flux.shape[0], self.n + k)
            self.flux, self.error = _copied(self.flux, self.n, grown), _copied(self.error, self.n, grown)
            self.bitmask = _copied(self.bitmask, self.n, grown)
        needed = _bitmask_dtype(bitmask, self.bitmask.dtype)
        if needed != self.bitmask.dtype:
            self.bitmask = _copied(self.bitmask, self.n, self.bitmask.shape[0], needed)
        rows = slice(self.n, self.n + k)
        self.flux[rows], self.error[rows], self.bitmask[rows] = flux, error, bitmask
        self.n += k

    def into(self, b: Block) -> None:
        """Hand the rows to ``b`` as one array each."""
        b.flux, b.error, b.bitmask = [self.flux[: self.n]], [self.error[: self.n]], [self.bitmask[: self.n]]


def _copied(rows: np.ndarray, n: int, capacity: int, dtype: Any = None) -> np.ndarray:
    """A (capacity, P) array (in ``dtype``, default ``rows``') holding ``rows[:n]``."""
    new = np.empty((capacity, rows.shape[1]), rows.dtype if dtype is None else dtype)
    new[:n] = rows[:n]
    return new


_BITMASK_DTYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def _bitmask_dtype(bitmask: np.ndarray | int, current: np.dtype) -> np.dtype:
    """``current``, or the first wider of :data:`_BITMASK_DTYPES` that holds every value of the integer
    ``bitmask`` (an array or a scalar)."""
    a = np.asarray(bitmask)
    if a.size == 0 or np.can_cast(a.dtype, current, casting="safe"):
        return current
    low, high = int(a.min()), int(a.max())
    for dtype in _BITMASK_DTYPES[_BITMASK_DTYPES.index(current):]:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return _BITMASK_DTYPES[-1]  # (a Spectrum's bitmask is int64: its values always fit)


def read_spectra_unit(
    unit: Unit, im: Any, resample: str | None
) -> tuple[dict[tuple[str, str], Block], list[tuple[str, str]]]:
    """Read the spectrum files of a unit into blocks on the model's grid; the rest to ``skipped``."""
    from starlabels.io.read import read_spectra
    from starlabels.preprocess.grids import convert
    from starlabels.preprocess.masking import BAD_PIXEL_ERROR

    blocks: dict[tuple[str, str], Block] = {}
    skipped: list[tuple[str, str]] = []
    target = grid_input.expected_grid(im, preprocessed=False)
    network_grid = grid_input.expected_grid(im, preprocessed=True)
    kind = str(getattr(im.preprocessing, "kind", "") or "")
    own = grid_input.model_instrument(im)
    grid_of = grid_input.GridCache()  # a unit's files are nearly always on one grid
    # a network's blocks are prepared in float32 (catalog_reading.prepare_blocks); others as read
    dtype = np.float32 if im.method is None else None
    rows: dict[tuple[str, str], _Rows] = {}  # raw blocks' rows, by block key
    order = 0
    for it in unit.items:  # one file at a time: this is I/O, the compute is batched per block
        try:
            spectra = read_spectra(it.path, instrument=own)  # tables without one: the model's
        except (StarlabelsError, OSError, ValueError) as exc:
            skipped.append((it.path, _reason(exc)))
            continue
        for s in spectra:
            where = f"{it.path}[{s.meta.get('HDU', '')}]"
            order += 1
            try:
                if s.meta.get("NORMALISED"):  # aspcapStar: continuum-normalised, the network's input
                    if kind != "continuum" or network_grid is None:
                        raise InputFileError(it.path, "holds continuum-normalised flux (aspcapStar); this "
                                                      "model takes raw flux")
                    src = grid_of(s.wavelength, s.instrument)
                    if network_grid.positions_in(src) is None and src.positions_in(network_grid) is None:
                        raise InputFileError(
                            it.path, f"continuum-normalised spectrum on grid {src.describe()}, not a "
                                     f"sub-grid of the model's {network_grid.describe()}")
                    flux = convert(s.flux, src, network_grid, fill=np.nan)
                    err = convert(s.error, src, network_grid, fill=np.nan)
                    bad = ~np.isfinite(flux) | ~np.isfinite(err) | (err <= 0)
                    if not bad.all():  # all-bad: kept, predict flags it INVALID_SPECTRUM
                        flux, err = np.where(bad, 1.0, flux), np.where(bad, BAD_PIXEL_ERROR, err)
                    b = _block(blocks, "pre", network_grid)
                    b.flux.append(flux[None])
                    b.error.append(err[None])
                    b.resampled.append(np.zeros(1, bool))
                else:
                    if target is not None and not _overlaps(s.wavelength, target):
                        raise InputFileError(
                            it.path, f"HDU {s.meta.get('HDU')}: {s.instrument} spectrum covers "
                                     f"{s.wavelength[0]:.0f}–{s.wavelength[-1]:.0f} Å, none of the model's "
                                     f"grid {target.describe()}")
                    src = grid_of(s.wavelength, s.instrument)
                    gi = grid_input.onto_model_grid(im, s.flux[None], s.error[None], s.bitmask[None], src,
                                           preprocessed=False, resample=resample, instrument=s.instrument,
                                           where=f"{it.path} HDU {s.meta.get('HDU')}: ")
                    b = _block(blocks, "raw", gi.grid)
                    key = _block_key("raw", gi.grid)
                    if key not in rows:
                        rows[key] = _Rows(len(unit.items), gi.flux.shape[1], dtype or gi.flux.dtype)
                    rows[key].append(gi.flux, gi.error, 0 if gi.bitmask is None else gi.bitmask)
                    b.resampled.append(gi.resampled)
            except (StarlabelsError, ValueError) as exc:
                skipped.append((where, _reason(exc)))
                continue
            b.meta.append(_meta_row(s.meta, it.path, order))
    for key, gathered in rows.items():
        gathered.into(blocks[key])
    return blocks, skipped


def same_preprocessing(stored: Any, im: Any) -> bool:
    """Whether a dataset's stored preprocessing config (a dict or its JSON text) is exactly the model's
    (``im.preprocessing``), so its spectra are the network's input as they are."""
    cfg = im.preprocessing
    if cfg is None or not hasattr(cfg, "to_dict"):
        return False
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    return json.dumps(stored, sort_keys=True, default=str) == json.dumps(cfg.to_dict(), sort_keys=True,
                                                                         default=str)


def read_unit(
    unit: Unit, im: Any, resample: str | None
) -> tuple[dict[tuple[str, str], Block], list[tuple[str, str]]]:
    """Read a unit's inputs into blocks on the model's grid (:func:`read_hdf5_unit` for a unit of HDF5
    rows, else :func:`read_spectra_unit`) → ``(blocks, skipped)``. Only I/O and grid conversion: no
    random draws, so it may run ahead in another thread (:mod:`starlabels.inference.prefetch`)."""
    if unit.items and unit.items[0].kind == "hdf5":
        return read_hdf5_unit(unit.items[0], im, resample)
    return read_spectra_unit(unit, im, resample)


def read_hdf5_unit(
    it: InputItem, im: Any, resample: str | None
) -> tuple[dict[tuple[str, str], Block], list[tuple[str, str]]]:
    """Rows [start, stop) of a starlabels HDF5 dataset as one block (raw spectra on the model's grid
    or resampled onto it; or network input preprocessed exactly as the model's config)."""
    from starlabels.data.hdf5 import SpectraDataset

    label = f"{it.path}[{it.start}:{it.stop}]"
    try:
        ds = SpectraDataset(it.path, rows=np.arange(it.start, it.stop))
        pre = ds.preprocessing
        batch = ds.read()
        n = len(batch)
        cols = {}
        for name, key in (("sdss_id", "SDSS_ID"), ("apogee_id", "APOGEE_ID"), ("telescope", "TELESCOPE"),
                          ("ra", "RA"), ("dec", "DEC"), ("snr", "SNR")):
            cols[key] = ds.meta(name) if name in ds.meta_names else None
        grid = ds.grid
        ds.close()
        if pre is None:
            gi = grid_input.onto_model_grid(
                im,
                batch.flux,
                batch.error,
                batch.bitmask,
                grid,
                preprocessed=False,
                resample=resample,
                instrument=ds.instrument,
                where=f"{label}: ",
            )
            b = Block(
                "raw",
                gi.grid,
                [gi.flux],
                [gi.error],
                [np.zeros(gi.flux.shape, np.int64) if gi.bitmask is None else gi.bitmask],
                [gi.resampled],
            )
        elif same_preprocessing(pre, im) and ds.n_pixels == im.n_pixels:
            b = Block(
                "pre",
                grid_input.expected_grid(im, preprocessed=True) or grid,
                [batch.flux],
                [batch.error],
                [],
                [np.zeros(n, bool)],
            )
        else:
            raise InputFileError(
                it.path,
                f"dataset holds spectra preprocessed otherwise than this model's "
                f"config, on grid {grid.describe()}",
            )
    except (StarlabelsError, OSError, ValueError, KeyError) as exc:
        return {}, [(label, _reason(exc))]

    def col(key: str, k: int) -> Any:
        v = cols[key]
        return None if v is None else v[k]

    b.meta = [
        _meta_row({key: col(key, k) for key in cols}, f"{it.path}[{int(r)}]", k)
        for k, r in enumerate(batch.rows)
    ]
    return {(b.kind, b.grid.checksum): b}, []
