"""starlabels.io: read and write SDSS APOGEE files, build SAS paths and download them.

Readers (``apogee.py``): :func:`read_apstar`, :func:`read_aspcapstar`, :func:`read_apvisit`,
:func:`read_allstar`. Writers (``apstar_writer.py``): :func:`write_apstar`,
:func:`write_aspcapstar`. SDSS Science Archive Server (``sas.py``): :func:`apstar_path`,
:func:`aspcapstar_path`, :func:`allstar_path`, :func:`sas_url`, :func:`download`.
"""

from starlabels.io.apogee import (
    DEFAULT_LABELS,
    AllStarTable,
    ApStarSpectrum,
    ApVisitSpectrum,
    AspcapSpectrum,
    flag_nonfinite,
    read_allstar,
    read_apstar,
    read_apvisit,
    read_aspcapstar,
    resample_to_apstar,
)
from starlabels.io.apstar_writer import atomic_write_hdulist, write_apstar, write_aspcapstar
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

__all__ = [
    "DEFAULT_LABELS",
    "AllStarTable",
    "ApStarSpectrum",
    "ApVisitSpectrum",
    "AspcapSpectrum",
    "DownloadError",
    "allstar_path",
    "apstar_path",
    "aspcapstar_path",
    "atomic_write_hdulist",
    "cache_path",
    "download",
    "fetch",
    "flag_nonfinite",
    "read_allstar",
    "read_apstar",
    "read_apvisit",
    "read_aspcapstar",
    "resample_to_apstar",
    "sas_url",
    "write_apstar",
    "write_aspcapstar",
]
