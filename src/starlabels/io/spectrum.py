"""The :class:`Spectrum` every reader returns: one 1-D spectrum, its instrument and its metadata.

Conventions (shared by every reader in :mod:`starlabels.io`):

* ``wavelength`` (P,) float64, vacuum Å, strictly increasing. Readers raise
  :class:`~starlabels.errors.InputFileError` naming the file and HDU when a file's wavelengths
  are not strictly monotonic; strictly *decreasing* arrays are reversed (all arrays with them).
* ``flux`` (P,) float64 in the file's units (SDSS: 1e-17 erg/s/cm²/Å).
* ``error`` (P,) float64, 1σ in flux units. Files that store an inverse variance get
  σ = 1/√ivar where ivar > 0 and ``inf`` where ivar ≤ 0 or is not finite.
* ``bitmask`` (P,) int64, the file's pixel flags unchanged (APOGEE_PIXMASK, SDSS-V
  ``pixel_flags``, BOSS ``AND_MASK``; zeros when the file has none).
* ``meta``: ``FILE``, ``HDU`` (extension name or number the spectrum came from), ``FORMAT``
  and, where the file has them, ``SDSS_ID``, ``TELESCOPE``, ``APOGEE_ID`` (APOGEE),
  ``RA``/``DEC`` (deg), ``SNR`` and format-specific keys documented by each reader.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starlabels.errors import InputDataError, InputFileError

__all__ = [
    "FLUX_UNIT",
    "Spectrum",
    "error_from_ivar",
    "ivar_from_error",
    "monotonic_order",
    "validated_grid",
]

#: Flux unit of SDSS spectra (astropy unit string), used when converting to specutils.
FLUX_UNIT = "1e-17 erg / (s cm2 Angstrom)"


def error_from_ivar(ivar: Any) -> np.ndarray:
    """σ = 1/√ivar (float64) where ivar > 0 and finite; ``inf`` elsewhere (ivar ≤ 0, NaN, inf)."""
    iv = np.asarray(ivar, dtype=np.float64)
    good = np.isfinite(iv) & (iv > 0)
    out = np.full(iv.shape, np.inf)
    out[good] = 1.0 / np.sqrt(iv[good])
    return out


def ivar_from_error(error: Any) -> np.ndarray:
    """ivar = 1/σ² (float64) where σ is finite and > 0; 0 elsewhere (the inverse of
    :func:`error_from_ivar` up to floating-point rounding)."""
    e = np.asarray(error, dtype=np.float64)
    good = np.isfinite(e) & (e > 0)
    out = np.zeros(e.shape)
    out[good] = 1.0 / e[good] ** 2
    return out


#: read-only wavelength arrays already checked by :func:`validated_grid` (id → the array; an entry
#: goes when its array does)
_VALIDATED: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def validated_grid(wavelength: np.ndarray) -> np.ndarray:
    """Check a read-only (P,) float64 wavelength array once, for :class:`Spectrum` objects that share it.

    Readers that give many spectra the same grid (e.g. every apStar file its log-linear 8575 pixels)
    pass one read-only array; :class:`Spectrum` then skips re-checking that it is 1-D and strictly
    increasing.

    Raises:
        ValueError: the array is writeable, a view, or not float64 (its values could change or be
            converted after the check).
        InputDataError: not 1-D with ≥ 2 strictly increasing values.
    """
    w = wavelength
    if not isinstance(w, np.ndarray) or w.flags.writeable or w.base is not None or w.dtype != np.float64:
        raise ValueError("validated_grid takes a read-only float64 array that owns its data")
    if w.ndim != 1 or w.size < 2 or not np.all(w[1:] > w[:-1]):
        raise InputDataError("wavelength must be 1-D and strictly increasing")
    _VALIDATED[id(w)] = w
    return w


def monotonic_order(wavelength: np.ndarray, path: str | os.PathLike[str], hdu: str | int) -> slice:
    """``slice(None)`` for strictly increasing, ``slice(None, None, -1)`` for strictly decreasing
    finite wavelengths; :class:`InputFileError` naming ``path`` and ``hdu`` otherwise."""
    w = np.asarray(wavelength, dtype=np.float64)
    if w.ndim != 1 or w.size < 2:
        raise InputFileError(path, f"HDU {hdu}: wavelength must be 1-D with ≥ 2 pixels, got {w.shape}")
    if not np.all(np.isfinite(w)):
        n_bad = int(np.sum(~np.isfinite(w)))
        raise InputFileError(path, f"HDU {hdu}: wavelength has {n_bad} non-finite values")
    d = np.diff(w)
    if np.all(d > 0):
        return slice(None)
    if np.all(d < 0):
        return slice(None, None, -1)
    bad = int(np.argmax(d <= 0)) if d[0] > 0 else int(np.argmax(d >= 0))
    raise InputFileError(
        path, f"HDU {hdu}: wavelength is not monotonic (pixel {bad}: {w[bad]:.6g} Å then "
              f"{w[bad + 1]:.6g} Å)"
    )


@dataclass(eq=False)
class Spectrum:
    """One spectrum on its own wavelength grid (see the module docstring for units).

    Attributes:
        instrument: ``"apogee"``, ``"boss"`` or the name a table gives (``starlabels.instruments``).
        wavelength: (P,) float64 vacuum Å, strictly increasing. Readers may give spectra on one
            grid one shared read-only array (copy it before changing it).
        flux: (P,) float64.
        error: (P,) float64 1σ; ``inf`` marks pixels without information (ivar ≤ 0).
        bitmask: (P,) int64 pixel flags as stored in the file. (Arrays given in the attribute's dtype
            are kept, not copied: float64 wavelength/flux/error, int64 bitmask.)
        meta: identifiers and provenance (``FILE``, ``HDU``, ``FORMAT``, ``SDSS_ID``, ``TELESCOPE``,
            ``APOGEE_ID``, ``RA``, ``DEC``, ``SNR``, …).

    Raises:
        InputDataError: arrays not 1-D of one length, or wavelength not strictly increasing.
    """

    instrument: str
    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)
        self.flux = np.asarray(self.flux, dtype=np.float64)
        self.error = np.asarray(self.error, dtype=np.float64)
        bm = np.asarray(self.bitmask)
        if bm.dtype.kind == "f":
            if not np.all(np.isfinite(bm)) or np.any(bm != np.rint(bm)) or np.any(bm < 0):
                raise InputDataError(f"{self._where()}bitmask holds non-integer values")
        elif bm.dtype.kind not in "iub":
            raise InputDataError(f"{self._where()}bitmask has dtype {bm.dtype}, expected integers")
        self.bitmask = bm.astype(np.int64, copy=False)  # (as flux/error: no copy when already int64)
        shapes = {a.shape for a in (self.wavelength, self.flux, self.error, self.bitmask)}
        if len(shapes) != 1 or self.wavelength.ndim != 1:
            raise InputDataError(
                f"{self._where()}wavelength/flux/error/bitmask must be 1-D of one length, got "
                f"{self.wavelength.shape}, {self.flux.shape}, {self.error.shape}, {self.bitmask.shape}"
            )
        w = self.wavelength
        if _VALIDATED.get(id(w)) is not w and (w.size < 2 or not np.all(w[1:] > w[:-1])):
            raise InputDataError(f"{self._where()}wavelength must be strictly increasing")
        self.instrument = str(self.instrument)

    def _where(self) -> str:
        f = self.meta.get("FILE") if isinstance(self.meta, dict) else None
        return f"{f} HDU {self.meta.get('HDU')}: " if f else ""

    @property
    def n_pixels(self) -> int:
        """Number of pixels P."""
        return int(self.wavelength.size)

    @property
    def ivar(self) -> np.ndarray:
        """(P,) inverse variance 1/σ², 0 where σ is inf."""
        return ivar_from_error(self.error)

    def to_specutils(self) -> Any:
        """A ``specutils.Spectrum``: spectral axis in Å, flux in :data:`FLUX_UNIT`,
        ``StdDevUncertainty(error)``, ``mask = bitmask != 0``; ``meta`` holds a copy of
        :attr:`meta` plus ``instrument`` and the integer ``bitmask`` (so nothing is lost
        in :meth:`from_specutils`)."""
        from astropy import units as astropy_units
        from astropy.nddata import StdDevUncertainty
        from specutils import Spectrum as SpecutilsSpectrum

        meta = dict(self.meta)
        meta["instrument"] = self.instrument
        meta["bitmask"] = self.bitmask.copy()
        return SpecutilsSpectrum(
            spectral_axis=self.wavelength * astropy_units.AA,
            flux=self.flux * astropy_units.Unit(FLUX_UNIT),
            uncertainty=StdDevUncertainty(self.error.copy()),
            mask=self.bitmask != 0,
            meta=meta,
        )

    @classmethod
    def from_specutils(cls, spectrum: Any, instrument: str | None = None) -> list[Spectrum]:
        """Spectra from a ``specutils.Spectrum`` (1-D, or 2-D flux: one per row).

        The spectral axis is converted to Å (``astropy_units.spectral()`` equivalency); flux keeps its
        values (unit recorded in ``meta["FLUX_UNIT"]``); the uncertainty (StdDev, Variance or
        InverseVariance) becomes σ (``inf`` where ivar ≤ 0; all ``inf`` without uncertainty);
        ``meta["bitmask"]`` (from :meth:`to_specutils`) restores the integer flags, else the
        boolean ``mask`` becomes bit 0. Descending axes are reversed.

        Raises:
            InputDataError: not a specutils Spectrum, or a non-monotonic spectral axis.
        """
        from astropy import units as astropy_units
        from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

        if not hasattr(spectrum, "spectral_axis") or not hasattr(spectrum, "flux"):
            raise InputDataError(f"expected a specutils Spectrum, got {type(spectrum).__name__}")
        angstrom = spectrum.spectral_axis.to_value(astropy_units.AA, equivalencies=astropy_units.spectral())
        wave = np.asarray(angstrom, np.float64)
        flux = np.atleast_2d(np.asarray(spectrum.flux.value, np.float64))
        unc = spectrum.uncertainty
        if unc is None:
            error = np.full(flux.shape, np.inf)
        elif isinstance(unc, StdDevUncertainty):
            error = np.asarray(unc.array, np.float64)
        elif isinstance(unc, VarianceUncertainty):
            var = np.asarray(unc.array, np.float64)
            error = np.where(np.isfinite(var) & (var >= 0), np.sqrt(np.abs(var)), np.inf)
        elif isinstance(unc, InverseVariance):
            error = error_from_ivar(unc.array)
        else:
            raise InputDataError(f"unsupported specutils uncertainty {type(unc).__name__}")
        error = np.broadcast_to(np.atleast_2d(error), flux.shape)
        meta_in = dict(spectrum.meta or {})
        bits = meta_in.pop("bitmask", None)
        inst = instrument or str(meta_in.pop("instrument", None) or "custom").strip().lower()
        meta_in.pop("instrument", None)
        if bits is not None and np.shape(bits)[-1:] == flux.shape[-1:]:
            bitmask = np.broadcast_to(np.atleast_2d(np.asarray(bits)), flux.shape).astype(np.int64)
        elif spectrum.mask is not None:
            bitmask = np.broadcast_to(np.atleast_2d(np.asarray(spectrum.mask)), flux.shape).astype(np.int64)
        else:
            bitmask = np.zeros(flux.shape, np.int64)
        try:
            where = meta_in.get("FILE", "<specutils Spectrum>")
            order = monotonic_order(wave, where, meta_in.get("HDU", "-"))
        except InputFileError as e:
            raise InputDataError(str(e)) from None
        meta_in.setdefault("FLUX_UNIT", str(spectrum.flux.unit))
        meta_in.setdefault("FORMAT", "specutils")
        out = []
        for i in range(flux.shape[0]):
            meta = dict(meta_in)
            if flux.shape[0] > 1:
                meta["ROW"] = i
            out.append(cls(str(inst), wave[order], flux[i][order], error[i][order], bitmask[i][order], meta))
        return out
