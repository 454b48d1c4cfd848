"""Files of the built-in generator's spectra: apStar (APOGEE), mwmStar (APOGEE or BOSS) and a
label catalogue (:mod:`starlabels.data.synthetic`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from starlabels.data.synthetic_spectra import SyntheticSpectra

__all__ = ["NOMINAL_ERRORS", "write_apstar_files", "write_label_catalog", "write_mwm_star_files"]


def write_apstar_files(
    directory: str | os.PathLike[str],
    spectra: SyntheticSpectra,
    *,
    prefix: str = "apStar-synth-",
    overwrite: bool = False,
) -> list[Path]:
    """Write each star as a real-layout apStar FITS file ``<prefix><APOGEE_ID>.fits``.

    Uses :func:`starlabels.io.write_apstar` (atomic writes; visits included when
    ``spectra.visits`` is set). Returns the paths, in star order.
    """
    from starlabels.io import write_apstar

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(spectra)):  # one file per star: I/O bound
        meta = spectra.star_meta(i)
        visits = None
        if spectra.visits is not None:
            visits = tuple(spectra.visits[k][i] for k in ("flux", "error", "bitmask"))
        p = d / f"{prefix}{meta['APOGEE_ID']}.fits"
        paths.append(write_apstar(p, spectra.flux[i], spectra.error[i], spectra.bitmask[i], meta,
                                  visits=visits, overwrite=overwrite))
    return paths


def write_mwm_star_files(
    directory: str | os.PathLike[str],
    spectra: SyntheticSpectra,
    *,
    prefix: str = "mwmStar-synth-",
    layout: str = "dr20",
    overwrite: bool = False,
) -> list[Path]:
    """Write each star as an SDSS-V ``mwmStar`` file ``<prefix><ID>.fits`` (ID: SDSS_ID, else
    APOGEE_ID), its spectrum in the BOSS/APO or APOGEE/APO extension by ``spectra.instrument``.

    Uses :func:`starlabels.io.mwm_writer.write_mwm_star` (``layout`` ``"dr19"`` or ``"dr20"``);
    errors become ivar = 1/σ² (0 where σ is inf). Returns the paths, in star order.
    """
    from starlabels.io.mwm_writer import write_mwm_star
    from starlabels.io.spectrum import Spectrum

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = spectra.instrument.name
    paths = []
    for i in range(len(spectra)):  # one file per star: I/O bound
        meta = spectra.star_meta(i)
        ident = meta.get("SDSS_ID", meta.get("APOGEE_ID"))
        row = {"SNR": float(spectra.snr[i]), "TELESCOPE": str(meta.get("TELESCOPE", "apo25m")),
               "V_RAD": float(meta.get("VHELIO", 0.0))}
        spec = Spectrum(name, spectra.wavelength, spectra.flux[i], spectra.error[i], spectra.bitmask[i], row)
        header = {k: meta[k] for k in ("SDSS_ID", "APOGEE_ID", "RA", "DEC") if k in meta}
        paths.append(write_mwm_star(d / f"{prefix}{ident}.fits", [spec], header, layout=layout,
                                    overwrite=overwrite))
    return paths


#: nominal 1-σ errors written by :func:`write_label_catalog` (labels themselves are exact)
NOMINAL_ERRORS: dict[str, float] = {"TEFF": 30.0, "LOGG": 0.05, "FE_H": 0.02}


def write_label_catalog(
    path: str | os.PathLike[str], spectra: SyntheticSpectra, errors: Mapping[str, float] | None = None
) -> Path:
    """Write an allStar-like catalogue (FITS table, or CSV for a ``.csv`` name) of the true labels.

    Columns: APOGEE_ID (BOSS: SDSS_ID), RA, DEC, SNR, each label and ``<label>_ERR`` (nominal errors from
    ``errors`` or :data:`NOMINAL_ERRORS`, 0.03 dex for abundances), with units.
    """
    from astropy.table import Table

    errs = dict(NOMINAL_ERRORS)
    errs.update(errors or {})
    t = Table()
    id_key = "APOGEE_ID" if "APOGEE_ID" in spectra.meta else "SDSS_ID"
    t[id_key] = spectra.meta[id_key] if id_key == "SDSS_ID" else spectra.meta[id_key].astype(str)
    t["RA"], t["DEC"], t["SNR"] = spectra.meta["RA"], spectra.meta["DEC"], spectra.snr
    t["RA"].unit = t["DEC"].unit = "deg"
    for j, (name, unit) in enumerate(zip(spectra.label_names, spectra.label_units, strict=True)):
        t[name] = spectra.labels[:, j]
        t[f"{name}_ERR"] = np.full(len(spectra), errs.get(name, 0.03))
        if unit and unit != "dex":  # FITS has no native "dex" unit: leave it in the description
            t[name].unit = t[f"{name}_ERR"].unit = unit
        t[name].description = t[f"{name}_ERR"].description = unit
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = "ascii.csv" if p.suffix.lower() == ".csv" else "fits"
    t.write(p, format=fmt, overwrite=True)
    return p
