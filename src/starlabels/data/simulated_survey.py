"""The arrays of a simulated survey (:class:`SimulatedSurvey`, made by
:class:`starlabels.data.survey.SurveySimulator`) and their writers: the project's HDF5 dataset,
apStar files (APOGEE) and SDSS-V mwmStar files (any instrument)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starlabels.core import Instrument
from starlabels.data.native_spectra import NativeGridSpectra
from starlabels.errors import InputDataError
from starlabels.units import label_unit

__all__ = ["SimulatedSurvey"]


@dataclass
class SimulatedSurvey(NativeGridSpectra):
    """Arrays of a simulated survey on the instrument's native grid (P pixels: APOGEE 8575, BOSS
    4648); labels in ``label_names`` order."""

    flux: np.ndarray  # (N, P) float32, raw (continuum kept)
    error: np.ndarray  # (N, P) float32 (APOGEE 1e10, BOSS inf where there is no data)
    bitmask: np.ndarray  # (N, P) int32, the instrument's bitmask (APOGEE_PIXMASK, SPPIXMASK)
    labels: np.ndarray  # (N, L) training labels (noisy, MISSING where absent)
    label_errors: np.ndarray  # (N, L) σ of the training-label noise (MISSING where absent)
    true_labels: np.ndarray  # (N, L)
    snr: np.ndarray  # (N,)
    group: np.ndarray  # (N,) str
    apogee_id: np.ndarray  # (N,) str: the simulated star's identifier (any instrument)
    label_names: tuple[str, ...]
    extinction_h: np.ndarray  # (N,) A_H of the reddening tilt, mag
    instrument: Instrument | None = None  # None: APOGEE

    @property
    def label_units(self) -> tuple[str, ...]:
        return tuple(label_unit(n) for n in self.label_names)

    def write_hdf5(self, path: str | Path) -> Path:
        """Write the project's HDF5 dataset (true labels as ``meta/true_<LABEL>``; the grid and
        instrument stored with the spectra)."""
        from starlabels.data.hdf5_writer import DatasetWriter

        path = Path(path)
        with DatasetWriter(path, **self.writer_settings()) as writer:
            self.append_to(writer)
        return path

    def writer_settings(self) -> dict:
        """Keyword arguments of :class:`~starlabels.data.hdf5_writer.DatasetWriter` for this survey."""
        if self.instrument.name == "apogee":
            where = {"n_pixels": self.grid.n_pixels, "grid": "apstar"}
        else:
            where = {"n_pixels": None, "grid": self.grid, "instrument": self.instrument.name}
        return {**where, "label_names": list(self.label_names), "label_units": list(self.label_units)}

    def append_to(self, writer) -> None:
        """Append these stars to an open :class:`~starlabels.data.hdf5_writer.DatasetWriter`."""
        meta = {
            "apogee_id": self.apogee_id.astype(str),
            "snr": self.snr.astype(np.float64),
            "group": self.group.astype(str),
            "ra": np.zeros(len(self)),
            "dec": np.zeros(len(self)),
            "source": np.full(len(self), "simulated", dtype=object).astype(str),
            "extinction_h": self.extinction_h.astype(np.float64),
        }
        for j, name in enumerate(self.label_names):
            meta[f"true_{name}"] = self.true_labels[:, j].astype(np.float64)
        writer.append(
            self.flux, self.error, self.bitmask, labels=self.labels,
            label_errors=self.label_errors, meta=meta,
        )

    def write_apstar(self, directory: str | Path) -> list[Path]:
        """Write one apStar-layout FITS file per star into ``directory`` (APOGEE only)."""
        from starlabels.io import write_apstar

        if self.instrument.name != "apogee":
            raise InputDataError(f"apStar files hold APOGEE spectra, not {self.instrument.name!r}: "
                                 "use write_mwm_star")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(self)):  # one file per star: I/O bound, not a numeric hot path
            # no RA/DEC cards: a simulated star has no position, and readers give NaN for it
            meta = {"APOGEE_ID": str(self.apogee_id[i]),
                    "SNR": float(self.snr[i]), "VHELIO": 0.0, "NVISITS": 1}
            p = directory / f"apStar-sim-{self.apogee_id[i]}.fits"
            write_apstar(p, self.flux[i], self.error[i], self.bitmask[i], meta, overwrite=True)
            paths.append(p)
        return paths

    def write_mwm_star(self, directory: str | Path, layout: str = "dr20") -> list[Path]:
        """Write one SDSS-V ``mwmStar`` file per star into ``directory`` (``layout`` ``"dr19"`` or
        ``"dr20"``; APOGEE or BOSS spectra in their APO extension; SDSS_ID = row number + 1)."""
        from starlabels.io.mwm_writer import write_mwm_star
        from starlabels.io.spectrum import Spectrum

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(self)):  # one file per star: I/O bound
            spec = Spectrum(self.instrument.name, self.wavelength, self.flux[i], self.error[i],
                            self.bitmask[i], {"SNR": float(self.snr[i]), "TELESCOPE": "apo25m"})
            header = {"SDSS_ID": i + 1}  # no position: RA/DEC cards left blank (read as NaN)
            if self.instrument.name == "apogee":
                header["APOGEE_ID"] = str(self.apogee_id[i])
            p = directory / f"mwmStar-sim-{self.apogee_id[i]}.fits"
            paths.append(write_mwm_star(p, [spec], header, layout=layout, overwrite=True))
        return paths

    def write_fits(self, directory: str | Path, layout: str = "dr20") -> list[Path]:
        """One FITS file per star: apStar for APOGEE, mwmStar (``layout``) otherwise."""
        if self.instrument.name == "apogee":
            return self.write_apstar(directory)
        return self.write_mwm_star(directory, layout)
