"""Spectra onto a model's grid: accept them, take the model's pixels, resample them, or refuse.

A model knows the grid its input must be on (:attr:`TrainedModel.input_grid`: the preprocessing's
input grid, or the network's grid for ``preprocessed=True`` input). Spectra given with their grid
(``wavelength=``, ``grid=``, :class:`~starlabels.io.Spectrum` objects or specutils spectra) are

1. used as they are when they are on that grid (same wavelengths to 1e-9, any name; a continuum
   model also takes spectra already on its output grid, as before);
2. cut to the model's pixels when the model's grid is a subset of theirs (exact, no interpolation);
3. resampled onto it with :func:`starlabels.preprocess.resample.resample` when ``resample`` is
   ``"linear"`` or ``"flux-conserving"``: errors propagated, target pixels the spectrum does not
   cover get σ = inf (rejected, so a spectrum that covers none of the model's range is flagged
   ``INVALID_SPECTRUM``, never given NaN labels without a flag). Pixels the spectrum's own bitmask
   rejects are given σ = inf *before* resampling when the spectrum comes from another instrument
   than the model's, whose bitmask bits mean something else; the resampled bitmask is then dropped;
4. otherwise refused: :class:`~starlabels.errors.InputDataError` naming both grids
   (:meth:`Grid.describe`) and, for Spectrum objects, the file and HDU.

Plain arrays without a grid are taken to be on the model's grid when their pixel count fits, as
before grids were data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from starlabels.core import Grid, find_grid
from starlabels.core import get as get_instrument
from starlabels.core.grid import from_wavelength
from starlabels.errors import InputDataError

__all__ = [
    "RESAMPLE_METHODS", "GridCache", "GridInput", "as_arrays", "expected_grid", "from_spectra",
    "model_inputs", "named_grid", "onto_model_grid",
]

#: Accepted values of ``resample`` (None: refuse spectra on another grid).
RESAMPLE_METHODS: tuple[str | None, ...] = (None, "linear", "flux-conserving")


@dataclass
class GridInput:
    """Arrays on the model's grid: flux, error (N, P) float, bitmask (N, P) int or None, ``grid``
    (the Grid they are on; None when unknown: plain arrays), ``resampled`` (N,) bool."""

    flux: np.ndarray
    error: np.ndarray | None
    bitmask: np.ndarray | None
    grid: Grid | None
    resampled: np.ndarray


def same_pixels(a: Grid, b: Grid) -> bool:
    """True when ``a`` and ``b`` have the same wavelengths (checksum, or each pixel to 1e-9)."""
    return a.same_as(b) or (a.n_pixels == b.n_pixels and a.positions_in(b) is not None)


def model_instrument(im: Any) -> str | None:
    """Instrument whose bitmask the model's preprocessing reads (None when unknown)."""
    cfg = im.preprocessing
    if cfg is not None and getattr(cfg, "instrument", None):
        return str(cfg.instrument)
    grid = getattr(im.trained, "grid", None)
    hit = find_grid(grid) if grid is not None else None
    return hit[0].name if hit is not None else None


def expected_grid(im: Any, preprocessed: bool) -> Grid | None:
    """The grid the model takes: the network's (``preprocessed``, or no preprocessing) or the
    preprocessing's input grid; None when the model does not record it."""
    if preprocessed or im.preprocessing is None:
        return getattr(im.trained, "grid", None)
    return im.preprocessing.grid


def _accepted(im: Any, preprocessed: bool, grid: Grid) -> Grid | None:
    """The model-side grid equal to ``grid`` when spectra on it are taken as they are."""
    target = expected_grid(im, preprocessed)
    candidates = [] if target is None else [target]
    cfg = im.preprocessing
    if not preprocessed and cfg is not None and cfg.kind == "continuum":
        candidates.append(cfg.output_grid)  # gap-free input (APOGEE: ASPCAP), as before
    for g in candidates:
        if same_pixels(grid, g):
            return g
    return None


def onto_model_grid(
    im: Any,
    flux: np.ndarray,
    error: np.ndarray | None,
    bitmask: np.ndarray | None,
    source: Grid,
    *,
    preprocessed: bool,
    resample: str | None,
    instrument: str | None = None,
    where: str = "",
) -> GridInput:
    """(N, P_source) arrays on ``source`` → :class:`GridInput` on the model's grid (see the module
    docstring). ``instrument``: the spectra's instrument (default: the one ``source`` belongs to);
    ``where``: a prefix for error messages (e.g. ``"file.fits HDU 3: "``)."""
    n = flux.shape[0]
    target = expected_grid(im, preprocessed)
    g = _accepted(im, preprocessed, source)
    if g is not None:
        return GridInput(flux, error, bitmask, g, np.zeros(n, bool))
    if target is None:
        raise InputDataError(
            f"{where}spectra on grid {source.describe()}, but the model does not record the grid of its "
            f"input ({im.n_pixels} pixels); give arrays of that many pixels without a grid"
        )
    pos = target.positions_in(source)
    if pos is not None:  # the model's pixels are a subset of the spectra's: take them
        return GridInput(
            np.take(flux, pos, axis=1), None if error is None else np.take(error, pos, axis=1),
            None if bitmask is None else np.take(bitmask, pos, axis=1), target, np.zeros(n, bool),
        )
    if resample is None:
        raise InputDataError(
            f"{where}spectra on grid {source.describe()} cannot be used by this model, whose input grid "
            f"is {target.describe()}; pass resample='linear' or 'flux-conserving' to resample them onto it"
        )
    if resample not in RESAMPLE_METHODS:
        raise InputDataError(f"resample must be one of {RESAMPLE_METHODS}, got {resample!r}")
    return _resampled(im, flux, error, bitmask, source, target, resample, instrument)


def _resampled(im, flux, error, bitmask, source: Grid, target: Grid, method: str, instrument) -> GridInput:
    from starlabels.preprocess.resample import resample as resample_arrays

    n = flux.shape[0]
    has_error = error is not None
    err = np.ones(flux.shape) if error is None else np.array(error, dtype=np.float64)
    if instrument is None:
        hit = find_grid(source)
        instrument = hit[0].name if hit is not None else None
    own = model_instrument(im)
    keep_bits = bitmask is not None and instrument is not None and instrument == own
    if bitmask is not None and not keep_bits:
        # another instrument's bits mean something else: its rejected pixels become σ = inf here
        try:
            rejected = get_instrument(instrument).bitmask().rejected(bitmask) if instrument else None
        except ValueError:
            rejected = None
        if rejected is None:  # an unknown instrument: any set bit rejects
            rejected = np.asarray(bitmask) != 0
        err[rejected] = np.inf
    bitmask_def = None
    if own is not None:
        try:
            bitmask_def = get_instrument(own).bitmask()
        except ValueError:
            bitmask_def = None
    f, e, b = resample_arrays(
        flux, err, bitmask if keep_bits else None, source=source, target=target, method=method,
        bitmask_def=bitmask_def,
    )
    if not has_error:  # no errors given: keep σ = 1 except where nothing was covered/usable
        e = np.where(np.isfinite(e), 1.0, np.inf)
    return GridInput(f, e, b if keep_bits else None, target, np.ones(n, bool))


@dataclass
class SpectraInput:
    """Rows from :class:`~starlabels.io.Spectrum` objects, grouped by grid (see :func:`from_spectra`)."""

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    grid: Grid
    instrument: str
    rows: np.ndarray  # positions of these spectra in the given list
    where: str


def is_spectra(obj: Any) -> bool:
    """True for a Spectrum / specutils spectrum, or a non-empty list/tuple of them."""
    if isinstance(obj, (list, tuple)):
        return len(obj) > 0 and all(_is_one_spectrum(o) for o in obj)
    return _is_one_spectrum(obj)


def _is_one_spectrum(o: Any) -> bool:
    from starlabels.io import Spectrum

    return isinstance(o, Spectrum) or (hasattr(o, "spectral_axis") and hasattr(o, "flux"))


def as_spectrum_list(obj: Any) -> list[Any]:
    """:class:`~starlabels.io.Spectrum` objects from one or a list of Spectrum/specutils spectra."""
    from starlabels.io import Spectrum

    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    out: list[Any] = []
    for o in items:
        out.extend([o] if isinstance(o, Spectrum) else Spectrum.from_specutils(o))
    return out


def spectrum_where(s: Any) -> str:
    """``"FILE HDU h: "`` for messages (empty when the spectrum has no file)."""
    f = s.meta.get("FILE") if isinstance(s.meta, dict) else None
    return f"{f} HDU {s.meta.get('HDU')}: " if f else ""


def from_spectra(spectra: Sequence[Any]) -> list[SpectraInput]:
    """Group Spectrum objects by (wavelengths, instrument), keeping their positions."""
    grid_of = GridCache()
    groups: dict[tuple[int, str], tuple[Grid, list[int]]] = {}
    for i, s in enumerate(spectra):
        grid = grid_of(s.wavelength, s.instrument)  # the same Grid object for equal wavelengths
        groups.setdefault((id(grid), str(s.instrument)), (grid, []))[1].append(i)
    out = []
    for (_, inst), (grid, rows) in groups.items():
        first = spectra[rows[0]]
        out.append(SpectraInput(
            flux=np.stack([spectra[i].flux for i in rows]),
            error=np.stack([spectra[i].error for i in rows]),
            bitmask=np.stack([spectra[i].bitmask for i in rows]),
            grid=grid, instrument=inst, rows=np.asarray(rows),
            where=spectrum_where(first),
        ))
    return out


class GridCache:
    """:func:`named_grid` once per distinct wavelength array: spectra read from files are nearly all
    on one grid, and hashing and checking 8575 wavelengths per spectrum costs more than reading an
    apStar file. Call it as ``named_grid``; equal wavelengths (exactly, same instrument) give the
    same :class:`Grid` object."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], list[tuple[np.ndarray, Grid]]] = {}

    def __call__(self, wavelength: np.ndarray, instrument: str) -> Grid:
        known = self._seen.setdefault((str(instrument), len(wavelength)), [])
        for stored, grid in known:
            if stored is wavelength or np.array_equal(stored, wavelength):
                return grid
        grid = named_grid(wavelength, instrument)
        # a read-only array (the readers' shared grids) is kept as it is, so the next lookup is `is`
        kept = wavelength if not np.asarray(wavelength).flags.writeable else np.array(wavelength, copy=True)
        known.append((kept, grid))
        return grid


def named_grid(wavelength: np.ndarray, instrument: str) -> Grid:
    """The instrument's own grid when the wavelengths are its (for messages and segments), else a
    grid made from the wavelengths."""
    grid = from_wavelength(wavelength, name=f"{instrument}-input")
    try:
        inst = get_instrument(instrument)
    except ValueError:
        return grid
    for g in inst.grids():
        if same_pixels(grid, g):
            return g
    return grid


# ----------------------------------------------------------------------------------------------
# predict's input: arrays, arrays with their grid, or Spectrum objects


def model_inputs(im: Any, flux: Any, error: Any, bitmask: Any, preprocessed: bool, *, wavelength: Any,
                 grid: Any, resample: str | None):
    """The input as 2-D arrays on the model's grid: (flux, error, bitmask|None, has_error, grid|None,
    resampled (N,) bool). See :mod:`starlabels.inference.grid_input`."""
    if resample not in RESAMPLE_METHODS:
        raise InputDataError(f"resample must be one of {RESAMPLE_METHODS}, got {resample!r}")
    if is_spectra(flux):
        if error is not None or bitmask is not None or wavelength is not None or grid is not None:
            raise InputDataError(
                "give Spectrum objects alone: their own errors, bitmasks and wavelengths are used "
                "(no error=, bitmask=, wavelength= or grid=)"
            )
        return _spectra_inputs(im, as_spectrum_list(flux), preprocessed, resample)
    if wavelength is not None and grid is not None:
        raise InputDataError("give the spectra's grid either as wavelength= or as grid=, not both")
    if wavelength is None and grid is None:
        f, e, b, has_error = as_arrays(flux, error, bitmask, im, preprocessed)
        return f, e, b, has_error, None, np.zeros(f.shape[0], bool)
    source = _source_grid(wavelength, grid)
    f, e, b, has_error = as_arrays(flux, error, bitmask, im, preprocessed, n_pixels=source.n_pixels)
    gi = onto_model_grid(im, f, e if has_error else None, b, source, preprocessed=preprocessed,
                         resample=resample)
    # without errors: σ = 1, but inf where resampling found no coverage (those pixels are rejected)
    e_out = gi.error if gi.error is not None else np.ones_like(gi.flux, dtype=np.float64)
    return gi.flux, e_out, gi.bitmask, has_error, gi.grid, gi.resampled


def _source_grid(wavelength: Any, grid: Any) -> Grid:
    from starlabels.preprocess.grids import get_grid

    if wavelength is not None:
        return from_wavelength(np.asarray(wavelength, np.float64), name="input")
    try:
        return get_grid(grid)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None


def _spectra_inputs(im: Any, spectra: list, preprocessed: bool, resample: str | None):
    """Spectrum objects (any mix of grids and instruments) → arrays on the model's grid, in order."""
    from starlabels.preprocess.grids import convert

    if preprocessed:
        raise InputDataError("Spectrum objects hold spectra as read; they cannot be preprocessed=True")
    parts = [
        (g, onto_model_grid(im, g.flux, g.error, g.bitmask, g.grid, preprocessed=False,
                            resample=resample, instrument=g.instrument, where=g.where))
        for g in from_spectra(spectra)
    ]
    target = expected_grid(im, preprocessed) or parts[0][1].grid
    n, P = len(spectra), target.n_pixels
    f, e = np.empty((n, P)), np.empty((n, P))
    b = np.zeros((n, P), np.int64)
    resampled = np.zeros(n, bool)
    for g, gi in parts:
        gf, ge, gb = gi.flux, gi.error, gi.bitmask
        if not gi.grid.same_as(target):  # a continuum model's gap-free input among full-grid input
            gf = convert(gf, gi.grid, target, fill=np.nan)
            ge = convert(ge, gi.grid, target, fill=np.inf)
            gb = None if gb is None else convert(gb, gi.grid, target, fill=0)
        f[g.rows], e[g.rows], resampled[g.rows] = gf, ge, gi.resampled
        if gb is not None:
            b[g.rows] = gb
    return f, e, b, True, target, resampled


def as_arrays(flux: Any, error: Any, bitmask: Any, im: Any, preprocessed: bool, n_pixels: int | None = None):
    """Validate shapes → (flux, error, bitmask|None, has_error), 2-D float arrays. ``n_pixels``: the
    pixel count of the spectra's given grid (default: the model's grid's)."""
    f = np.asarray(flux)
    if f.dtype == object or not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise InputDataError(f"flux must be a real numeric array, got dtype {f.dtype}")
    if f.ndim == 1:
        f = f[None, :]
    if f.ndim != 2:
        raise InputDataError(f"flux must be (P,) or (N, P), got shape {np.shape(flux)}")
    model_grid = expected_grid(im, preprocessed)
    if n_pixels is not None:
        expected = int(n_pixels)
    elif preprocessed or model_grid is None:
        expected = im.n_pixels
    else:
        expected = model_grid.n_pixels
    if not preprocessed and im.preprocessing is None and getattr(im, "method", None) is None:
        # (a LabelMethod without preprocessing takes its own grid as raw input)
        raise InputDataError(
            f"this model has no preprocessing: its input is the network input ({im.n_pixels} pixels) — "
            "pass preprocessed=True"
        )
    if f.shape[1] != expected:
        if n_pixels is not None:
            raise InputDataError(f"flux has {f.shape[1]} pixels but the given grid has {expected}")
        if preprocessed:
            raise InputDataError(
                f"preprocessed flux has {f.shape[1]} pixels but the network takes {im.n_pixels}"
            )
        hint = (
            f"; it matches the network input ({im.n_pixels}) — pass preprocessed=True"
            if f.shape[1] == im.n_pixels else
            "; for spectra on another grid give wavelength= or grid= (and resample= to resample them)"
        )
        where = model_grid.describe() if model_grid is not None else f"({im.n_pixels} pixels)"
        raise InputDataError(
            f"flux has {f.shape[1]} pixels; raw input must be on the model's input grid {where}{hint}"
        )
    has_error = error is not None
    e = np.ones_like(f, dtype=np.float64) if error is None else np.asarray(error)
    if e.ndim == 1:
        e = e[None, :]
    if e.shape != f.shape:
        raise InputDataError(f"error shape {np.shape(error)} differs from flux shape {np.shape(flux)}")
    b = None
    if bitmask is not None:
        if preprocessed:
            raise InputDataError("bitmask applies to raw apStar input, not to preprocessed=True")
        b = np.asarray(bitmask)
        if b.ndim == 1:
            b = b[None, :]
        if b.shape != f.shape:
            raise InputDataError(
                f"bitmask shape {np.shape(bitmask)} differs from flux shape {np.shape(flux)}"
            )
    return f, e, b, has_error
