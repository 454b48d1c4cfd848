"""The spectra the built-in generator makes (:class:`SyntheticSpectra`), on any instrument's grid
(:mod:`starlabels.data.synthetic`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starlabels.core import Instrument
from starlabels.data.native_spectra import NativeGridSpectra

__all__ = ["SyntheticSpectra", "apogee_id"]


@dataclass
class SyntheticSpectra(NativeGridSpectra):
    """Synthetic spectra on an instrument's native grid, with their true labels.

    Shapes: N stars, P pixels of the grid (APOGEE 8575, BOSS 4648), L labels, V visits.

    Attributes:
        flux: (N, P) float32 observed flux (noise, defects, gaps) in "1e-17 erg/s/cm²/Å"
            (APOGEE ~1e2–1e3; BOSS ~1–1e3 for G = 13–17.5).
        error: (N, P) float32 1-σ error of ``flux`` (APOGEE: BAD_ERROR on BADPIX pixels and gaps;
            BOSS: inf where there is no information, as ivar = 0 in SDSS-V files).
        bitmask: (N, P) int32, the instrument's default bitmask (APOGEE_PIXMASK, SPPIXMASK).
        clean_flux: (N, P) float64 noise- and defect-free flux (gaps included).
        continuum: (N, P) float64 the continuum of ``clean_flux`` (no lines).
        labels: (N, L) float64 true labels (TEFF K, LOGG dex, FE_H and X_FE dex).
        label_names, label_units: the L names and units.
        snr: (N,) median S/N over good pixels (the requested SNR when no visits).
        meta: ``{name: (N,) array}`` header values. APOGEE: APOGEE_ID, RA, DEC (deg), SNR, VHELIO
            (km/s), NVISITS, J, H, K (mag). BOSS: SDSS_ID, RA, DEC, SNR, VHELIO, NVISITS, G (mag),
            A_V (mag of the reddening), TELESCOPE.
        defects: ``{"gap", "badpix", "cosmic", "sky", "persistence": (N, P) bool}`` where each
            kind of defect was put.
        visits: None, or ``{"flux", "error", "bitmask": (N, V, P)}`` the individual visits.
        instrument: the instrument whose grid and bitmask these are (None: APOGEE).
    """

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    clean_flux: np.ndarray
    continuum: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    label_units: tuple[str, ...]
    snr: np.ndarray
    meta: dict[str, np.ndarray]
    defects: dict[str, np.ndarray] = field(default_factory=dict)
    visits: dict[str, np.ndarray] | None = None
    instrument: Instrument | None = None

    @property
    def normalised_clean(self) -> np.ndarray:
        """(N, P) noise-free flux divided by its continuum (1 = no absorption)."""
        return self.clean_flux / self.continuum

    @property
    def normalized_clean(self) -> np.ndarray:
        """Deprecated spelling of :attr:`normalised_clean` (same array, with a DeprecationWarning)."""
        warnings.warn("SyntheticSpectra.normalized_clean is now normalised_clean", DeprecationWarning,
                      stacklevel=2)
        return self.normalised_clean

    def star_meta(self, i: int) -> dict[str, Any]:
        """Header values of star ``i`` as Python scalars (for ``write_apstar``)."""
        return {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in self.meta.items()}

    def subset(self, index: Any) -> SyntheticSpectra:
        """The stars at ``index`` (int array, slice or bool mask)."""
        idx = np.arange(len(self))[index]
        return SyntheticSpectra(
            flux=self.flux[idx], error=self.error[idx], bitmask=self.bitmask[idx],
            clean_flux=self.clean_flux[idx], continuum=self.continuum[idx], labels=self.labels[idx],
            label_names=self.label_names, label_units=self.label_units, snr=self.snr[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
            defects={k: v[idx] for k, v in self.defects.items()},
            visits=None if self.visits is None else {k: v[idx] for k, v in self.visits.items()},
            instrument=self.instrument,
        )



def apogee_id(ra: float, dec: float) -> str:
    """A 2MASS-style designation ``2MHHMMSSss+DDMMSSs`` from RA/Dec in degrees."""
    h = ra / 15.0
    hh, mm = int(h), int((h * 60) % 60)
    ss = (h * 3600) % 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d * 60) % 60)
    ds = (d * 3600) % 60
    return f"2M{hh:02d}{mm:02d}{int(ss * 100):04d}{sign}{dd:02d}{dm:02d}{int(ds * 10):03d}"
