"""starlabels.io: read and write SDSS spectra and catalogues, build SAS paths and download them.

Start with :func:`read_spectra` (any supported file, recognised by content → list of
:class:`Spectrum`) and :func:`scan_inputs` (files/folders → readable files + skipped with reasons).
:class:`Spectrum` (``spectrum.py``) is what the spectrum readers return. APOGEE DR14–17
(``apogee.py``, ``apvisit.py``): :func:`read_apstar`, :func:`read_aspcapstar`, :func:`read_apvisit`,
:func:`read_allstar` (``allstar.py``); any label table, allStar or SDSS-V astraAllStar (``astra.py``):
:func:`read_label_table`. SDSS-V (``sdss_v.py``): :func:`read_mwm` (mwmStar/mwmVisit DR19/DR20),
:func:`read_apstar_spectra`. Writers (``apstar_writer.py``, ``mwm_writer.py``):
:func:`write_apstar`, :func:`write_aspcapstar`, :func:`write_mwm_star`, :func:`write_mwm_visit`.
SDSS Science Archive Server (``sas.py``, ``sdss_v_paths.py``): :func:`apstar_path`,
:func:`aspcapstar_path`, :func:`allstar_path`, :func:`mwm_path`, :func:`sdss_v_apstar_path`,
:func:`boss_spec_path`, :func:`astra_allstar_path`, :func:`sas_url`, :func:`download`.
"""

from starlabels.io.allstar import DEFAULT_LABELS, AllStarTable, read_allstar
from starlabels.io.apogee import ApStarSpectrum, AspcapSpectrum, read_apstar, read_aspcapstar
from starlabels.io.apogee_fits import flag_nonfinite
from starlabels.io.apstar_writer import write_apstar, write_aspcapstar
from starlabels.io.apvisit import ApVisitSpectrum, read_apvisit, resample_to_apstar
from starlabels.io.astra import is_astra_table, read_astra_allstar, read_label_table
from starlabels.io.atomic_file import atomic_write_hdulist
from starlabels.io.boss import read_boss_spec
from starlabels.io.mwm_writer import write_mwm_star, write_mwm_visit
from starlabels.io.read import FORMATS, identify_format, read_spectra, scan_inputs
from starlabels.io.sas import (
    DownloadError,
    allstar_path,
    apstar_path,
    aspcapstar_path,
    cache_path,
    download,
    fetch,
    sas_url,
)
from starlabels.io.sdss_v import read_apstar_spectra, read_mwm
from starlabels.io.sdss_v_paths import astra_allstar_path, boss_spec_path, mwm_path, sdss_v_apstar_path
from starlabels.io.spectrum import Spectrum
from starlabels.io.table import read_table_spectra

__all__ = [
    "DEFAULT_LABELS",
    "FORMATS",
    "AllStarTable",
    "ApStarSpectrum",
    "ApVisitSpectrum",
    "AspcapSpectrum",
    "DownloadError",
    "Spectrum",
    "allstar_path",
    "apstar_path",
    "aspcapstar_path",
    "astra_allstar_path",
    "atomic_write_hdulist",
    "boss_spec_path",
    "cache_path",
    "download",
    "fetch",
    "flag_nonfinite",
    "identify_format",
    "is_astra_table",
    "mwm_path",
    "read_allstar",
    "read_apstar",
    "read_apstar_spectra",
    "read_apvisit",
    "read_aspcapstar",
    "read_astra_allstar",
    "read_boss_spec",
    "read_label_table",
    "read_mwm",
    "read_spectra",
    "read_table_spectra",
    "resample_to_apstar",
    "sas_url",
    "scan_inputs",
    "sdss_v_apstar_path",
    "write_apstar",
    "write_aspcapstar",
    "write_mwm_star",
    "write_mwm_visit",
]
