"""SAS paths of SDSS files, every release: APOGEE DR14–DR17 here, DR19/DR20 in :mod:`.sdss_v_paths`;
:func:`file_path` dispatches on the kind. Relative to the SAS root (default
``https://data.sdss.org/sas``).

APOGEE (``{id}`` = APOGEE_ID):

DR14
  apStar      ``dr14/apogee/spectro/redux/r8/stars/{telescope}/{field}/apStar-r8-{id}.fits``
  aspcapStar  ``dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/{field}/aspcapStar-r8-l31c.2-{id}.fits``
  allStar     ``dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/allStar-l31c.2.fits``
DR16
  apStar      ``dr16/apogee/spectro/redux/r12/stars/{telescope}/{field}/apStar-r12-{id}.fits``
  aspcapStar  ``dr16/apogee/spectro/aspcap/r12/l33/{telescope}/{field}/aspcapStar-r12-{id}.fits``
  allStar     ``dr16/apogee/spectro/aspcap/r12/l33/allStar-r12-l33.fits``
DR17
  apStar      ``dr17/apogee/spectro/redux/dr17/stars/{telescope}/{field}/apStar-dr17-{id}.fits``
  aspcapStar  ``dr17/apogee/spectro/aspcap/dr17/synspec_rev1/{telescope}/{field}/``
              ``aspcapStar-dr17-{id}.fits``
  allStar     ``dr17/apogee/spectro/aspcap/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits``
              (``allStarLite-dr17-synspec_rev1.fits`` with ``lite=True``)

``{field}`` is the allStar ``FIELD`` (e.g. ``K04_083+13``) for DR16/17 and the numeric
``LOCATION_ID`` for DR14 (DR14 aspcapStar folders have no telescope level). Spectra from the
southern telescope (``lco25m``, DR16+) are named ``asStar-…`` instead of ``apStar-…``.

DR19 and DR20 (SDSS-V): mwmStar, mwmVisit, apStar on HEALPix paths, BOSS specFull/spec-lite and
the astraAllStar<Pipeline> tables; see :mod:`starlabels.io.sdss_v_paths`. :func:`file_path`
dispatches on the kind for every release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlabels.io import sdss_v_paths as v5

__all__ = [
    "KINDS",
    "RELEASES",
    "SDSSV_KINDS",
    "TELESCOPES",
    "Release",
    "allstar_path",
    "apstar_path",
    "aspcapstar_path",
    "file_path",
]

TELESCOPES: tuple[str, ...] = ("apo25m", "lco25m", "apo1m")
KINDS: tuple[str, ...] = ("apstar", "aspcapstar", "allstar", "mwmstar", "mwmvisit", "specfull", "speclite",
                          "astraallstar")
#: Kinds that exist only in the SDSS-V releases (DR19, DR20).
SDSSV_KINDS: tuple[str, ...] = ("mwmstar", "mwmvisit", "specfull", "speclite", "astraallstar")
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.+\-]+$")


@dataclass(frozen=True)
class Release:
    """Where one APOGEE data release keeps its files on the SAS."""

    name: str
    apred: str  # reduction version in apStar names: r8, r12, dr17
    redux: str  # folder with stars/{telescope}/{field}/
    aspcap: str  # folder with the aspcapStar folders and the allStar file
    aspcap_prefix: str  # aspcapStar file-name prefix (before "-{APOGEE_ID}.fits")
    aspcap_by_telescope: bool  # aspcapStar folders are {telescope}/{field} (else {field})
    allstar: str
    allstar_lite: str | None
    telescopes: tuple[str, ...]


RELEASES: dict[str, Release] = {
    "dr14": Release(
        "dr14", "r8", "dr14/apogee/spectro/redux/r8", "dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2",
        "aspcapStar-r8-l31c.2", False, "allStar-l31c.2.fits", None, ("apo25m", "apo1m"),
    ),
    "dr16": Release(
        "dr16", "r12", "dr16/apogee/spectro/redux/r12", "dr16/apogee/spectro/aspcap/r12/l33",
        "aspcapStar-r12", True, "allStar-r12-l33.fits", None, TELESCOPES,
    ),
    "dr17": Release(
        "dr17", "dr17", "dr17/apogee/spectro/redux/dr17",
        "dr17/apogee/spectro/aspcap/dr17/synspec_rev1", "aspcapStar-dr17", True,
        "allStar-dr17-synspec_rev1.fits", "allStarLite-dr17-synspec_rev1.fits", TELESCOPES,
    ),
}


# ----------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------
def _release(release: str) -> Release:
    try:
        return RELEASES[str(release).lower()]
    except KeyError:
        raise ValueError(f"unknown APOGEE release {release!r}; known: {sorted(RELEASES)}") from None


def _check(rel: Release, telescope: str, field: str | int | None, apogee_id: str) -> tuple[str, str, str]:
    telescope = str(telescope).strip().lower()
    if telescope not in rel.telescopes:
        raise ValueError(f"telescope {telescope!r} not in {rel.name}: {list(rel.telescopes)}")
    if field is None or str(field).strip() == "":
        what = "LOCATION_ID" if rel.name == "dr14" else "FIELD"
        raise ValueError(f"{rel.name} spectra need the star's field ({what} in allStar)")
    field_s, apogee_id = str(field).strip(), str(apogee_id).strip()
    for name, value in (("field", field_s), ("APOGEE_ID", apogee_id)):
        if not _SAFE_PART.match(value) or value in (".", ".."):
            raise ValueError(f"invalid {name} {value!r}")
    return telescope, field_s, apogee_id


def apstar_path(
    apogee_id: str, *, release: str = "dr17", telescope: str = "apo25m", field: str | int | None = None
) -> str:
    """SAS path (relative, ``/``-separated) of a star's apStar file (asStar for lco25m)."""
    rel = _release(release)
    telescope, field_s, apogee_id = _check(rel, telescope, field, apogee_id)
    prefix = "asStar" if telescope == "lco25m" else "apStar"
    return f"{rel.redux}/stars/{telescope}/{field_s}/{prefix}-{rel.apred}-{apogee_id}.fits"


def aspcapstar_path(
    apogee_id: str, *, release: str = "dr17", telescope: str = "apo25m", field: str | int | None = None
) -> str:
    """SAS path of a star's aspcapStar file (DR14: ``field`` is the LOCATION_ID folder)."""
    rel = _release(release)
    telescope, field_s, apogee_id = _check(rel, telescope, field, apogee_id)
    folder = f"{rel.aspcap}/{telescope}/{field_s}" if rel.aspcap_by_telescope else f"{rel.aspcap}/{field_s}"
    return f"{folder}/{rel.aspcap_prefix}-{apogee_id}.fits"


def allstar_path(release: str = "dr17", *, lite: bool = False) -> str:
    """SAS path of the release's allStar catalogue (``lite``: DR17 allStarLite)."""
    rel = _release(release)
    if lite:
        if rel.allstar_lite is None:
            raise ValueError(f"{rel.name} has no allStarLite file")
        return f"{rel.aspcap}/{rel.allstar_lite}"
    return f"{rel.aspcap}/{rel.allstar}"


def file_path(kind: str, identifier: str | int | None = None, *, release: str = "dr17",
              telescope: str = "apo25m", field: str | int | None = None, lite: bool = False,
              healpix: int | str | None = None, v_astra: str | None = None, apred: str | None = None,
              run2d: str | None = None, mjd: int | str | None = None, pipeline: str | None = None) -> str:
    """SAS path of ``kind`` for any release.

    DR14–DR17: ``"apstar"``, ``"aspcapstar"`` (``identifier`` = APOGEE_ID, ``telescope``, ``field``),
    ``"allstar"`` (``lite``). DR19/DR20: ``"apstar"`` (``identifier`` = APOGEE object name,
    ``healpix``, ``telescope``, ``apred``), ``"mwmstar"``/``"mwmvisit"`` (``identifier`` = SDSS_ID,
    ``v_astra``), ``"specfull"``/``"speclite"`` (``identifier`` = CATALOGID, ``field``, ``mjd``,
    ``run2d``), ``"astraallstar"`` (``pipeline``, e.g. ``"ASPCAP"``; ``v_astra``).
    """
    kind = kind.lower()
    if kind not in KINDS:
        raise ValueError(f"unknown file kind {kind!r}; known: {list(KINDS)}")
    sdss_v = str(release).lower() in v5.SDSSV_RELEASES
    if kind in SDSSV_KINDS and not sdss_v:
        raise ValueError(f"{kind} files exist in the SDSS-V releases {sorted(v5.SDSSV_RELEASES)}, "
                         f"not in {release!r}")
    if kind == "astraallstar":
        if not pipeline:
            raise ValueError("astraallstar needs a pipeline (e.g. ASPCAP, BossNet)")
        return v5.astra_allstar_path(pipeline, release=release, v_astra=v_astra)
    if kind == "allstar":
        if sdss_v:
            raise ValueError(f"{release} has no allStar file; use astraallstar with a pipeline")
        return allstar_path(release, lite=lite)
    if identifier is None or str(identifier).strip() == "":
        what = {"mwmstar": "an SDSS_ID", "mwmvisit": "an SDSS_ID", "specfull": "a CATALOGID",
                "speclite": "a CATALOGID"}.get(kind, "an APOGEE_ID")
        raise ValueError(f"{kind} needs {what}")
    if kind in ("mwmstar", "mwmvisit"):
        return v5.mwm_path(identifier, kind=kind[3:], release=release, v_astra=v_astra)
    if kind in ("specfull", "speclite"):
        if field is None or mjd is None:
            raise ValueError(f"{kind} needs the field and mjd of the coadd")
        return v5.boss_spec_path(identifier, field=field, mjd=mjd, release=release, run2d=run2d,
                                 lite=kind == "speclite")
    if kind == "apstar" and sdss_v:
        if healpix is None:
            raise ValueError(f"{release} apStar files are on HEALPix paths: give the star's healpix")
        return v5.sdss_v_apstar_path(str(identifier), healpix=healpix, telescope=telescope, release=release,
                                     apred=apred)
    if kind == "aspcapstar" and sdss_v:
        raise ValueError(f"{release} has no aspcapStar files; use astraallstar (ASPCAP) for labels")
    build = apstar_path if kind == "apstar" else aspcapstar_path
    return build(str(identifier), release=release, telescope=telescope, field=field)
