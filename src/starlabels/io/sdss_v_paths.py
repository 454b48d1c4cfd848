"""SAS paths of SDSS-V files in DR19 and DR20: mwmStar, mwmVisit, apStar (HEALPix layout), BOSS
spec (specFull / spec-lite) and the astraAllStar<Pipeline> summary tables.

Written from the SDSS data model's ``location`` fields (``mwmStar.yaml``, ``mwmVisit.yaml``,
``apStar.yaml``, ``specFull.yaml``, ``astraAllStar*.yaml``, github.com/sdss/datamodel at b90b518),
with the environment roots of sdss-tree's DR18–DR20 configurations (``MWM_ASTRA`` =
``{release}/spectro/astra``, ``APOGEE_REDUX`` = ``{release}/spectro/apogee/redux``,
``BOSS_SPECTRO_REDUX`` = ``{release}/spectro/boss/redux``) and the folder rules of sdss-access
(``sdss_id_groups``, ``healpixgrp``, ``pad_fieldid``, ``isplate``, ``fieldgrp``). sdss-access itself
is not used: loading its path tree sets process-wide environment variables, which the library
must not do.

* mwmStar / mwmVisit: ``{rel}/spectro/astra/{v_astra}/spectra/{star|visit}/{G1}/{G0}/``
  ``mwm{Star|Visit}-{v_astra}-{sdss_id}.fits``, G1 = (sdss_id // 100) % 100, G0 = sdss_id % 100
  (two digits each);
* apStar: ``{rel}/spectro/apogee/redux/{apred}/stars/{telescope}/{healpix // 1000}/{healpix}/``
  ``apStar-{apred}-{telescope}-{obj}.fits`` (``-{starver}`` before ``.fits`` for a dated version);
* specFull / spec-lite: DR19 ``{rel}/spectro/boss/redux/{run2d}/spectra/{full|lite}/{F}/{mjd}/``
  ``spec-{F}-{mjd}-{catalogid}.fits``; DR20 ``…/{run2d}/spectra/daily/{full|lite}/{FFF}XXX/{F}/{mjd}/…``;
  F = field id zero-padded to 6 digits (run2d v6_0_1–4: unpadded, folder with a ``p`` suffix);
* astraAllStar: ``{rel}/spectro/astra/{v_astra}/summary/astraAllStar{Pipeline}-{v_astra}.fits.gz``.

Defaults per release (from the data model's examples): DR19 ``v_astra`` 0.6.0, ``run2d`` v6_1_3,
``apred`` 1.0; DR20 ``v_astra`` 0.8.1, ``run2d`` v6_2_1 (DR20 apStar files are not in the data
model: pass ``apred``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ASTRA_PIPELINES",
    "SDSSV_RELEASES",
    "SdssVRelease",
    "astra_allstar_path",
    "boss_spec_path",
    "mwm_path",
    "sdss_id_group",
    "sdss_v_apstar_path",
]

#: Pipelines with astraAllStar tables in the data model (others can be named too).
ASTRA_PIPELINES: tuple[str, ...] = ("ASPCAP", "ApogeeNet", "AstroNN", "BossNet", "TheCannon", "ThePayne",
                                    "MDwarfType", "LineForest", "Slam", "SnowWhite", "Corv", "AstroNNdist")
_SAFE = re.compile(r"^[A-Za-z0-9_.+\-]+$")


@dataclass(frozen=True)
class SdssVRelease:
    """Defaults of one SDSS-V data release."""

    name: str
    v_astra: str
    run2d: str
    apred: str | None
    boss_daily: bool  # DR20 moved BOSS spectra under spectra/daily/…/{fieldgrp}


SDSSV_RELEASES: dict[str, SdssVRelease] = {
    "dr19": SdssVRelease("dr19", "0.6.0", "v6_1_3", "1.0", False),
    "dr20": SdssVRelease("dr20", "0.8.1", "v6_2_1", None, True),
}


def _release(release: str) -> SdssVRelease:
    try:
        return SDSSV_RELEASES[str(release).lower()]
    except KeyError:
        raise ValueError(f"unknown SDSS-V release {release!r}; known: {sorted(SDSSV_RELEASES)}") from None


def _safe(name: str, value: object) -> str:
    s = str(value).strip()
    if not _SAFE.match(s) or s in (".", ".."):
        raise ValueError(f"invalid {name} {value!r}")
    return s


def _int(name: str, value: object) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if v < 0:
        raise ValueError(f"{name} must be ≥ 0, got {v}")
    return v


def sdss_id_group(sdss_id: int | str) -> str:
    """The two folder levels of an SDSS_ID: ``f"{(id // 100) % 100:02d}/{id % 100:02d}"``."""
    i = _int("sdss_id", sdss_id)
    return f"{(i // 100) % 100:02d}/{i % 100:02d}"


def mwm_path(sdss_id: int | str, *, kind: str = "star", release: str = "dr20",
             v_astra: str | None = None) -> str:
    """SAS path of a star's mwmStar (``kind="star"``) or mwmVisit (``kind="visit"``) file."""
    rel = _release(release)
    if kind not in ("star", "visit"):
        raise ValueError(f"kind must be 'star' or 'visit', got {kind!r}")
    v = _safe("v_astra", v_astra or rel.v_astra)
    i = _int("sdss_id", sdss_id)
    name = "mwmStar" if kind == "star" else "mwmVisit"
    return f"{rel.name}/spectro/astra/{v}/spectra/{kind}/{sdss_id_group(i)}/{name}-{v}-{i}.fits"


def sdss_v_apstar_path(obj: str, *, healpix: int | str, telescope: str = "apo25m", release: str = "dr19",
                       apred: str | None = None, starver: int | str | None = None) -> str:
    """SAS path of an SDSS-V apStar file (HEALPix folders; ``obj`` is the APOGEE object name)."""
    rel = _release(release)
    red = apred or rel.apred
    if red is None:
        raise ValueError(f"{rel.name} apStar paths need apred= (the reduction version); the data model "
                         f"has no {rel.name} apStar example")
    tel = _safe("telescope", telescope).lower()
    if tel not in ("apo25m", "lco25m", "apo1m"):
        raise ValueError(f"telescope {telescope!r} not one of apo25m, lco25m, apo1m")
    hp = _int("healpix", healpix)
    suffix = "" if starver is None else f"-{_int('starver', starver)}"
    return (f"{rel.name}/spectro/apogee/redux/{_safe('apred', red)}/stars/{tel}/{hp // 1000}/{hp}/"
            f"apStar-{red}-{tel}-{_safe('obj', obj)}{suffix}.fits")


def boss_spec_path(catalogid: int | str, *, field: int | str, mjd: int | str, release: str = "dr20",
                   run2d: str | None = None, lite: bool = False) -> str:
    """SAS path of a BOSS specFull (or, ``lite=True``, spec-lite) coadd file."""
    rel = _release(release)
    r2 = _safe("run2d", run2d or rel.run2d)
    fld = _safe("field", field)
    plate_era = r2 in ("v6_0_1", "v6_0_2", "v6_0_3", "v6_0_4")
    padded = fld if plate_era or not fld.isdigit() else fld.zfill(6)
    folder = f"{padded}p" if plate_era else padded
    m = _int("mjd", mjd)
    cat = _int("catalogid", catalogid)
    kind = "lite" if lite else "full"
    daily = rel.boss_daily and not (r2.startswith(("v5", "v6_0", "v6_1")) or r2 in ("26", "103", "104"))
    if daily:
        group = f"{int(fld) // 1000:03d}XXX" if fld.isdigit() else fld
        base = f"{rel.name}/spectro/boss/redux/{r2}/spectra/daily/{kind}/{group}/{folder}"
    else:
        base = f"{rel.name}/spectro/boss/redux/{r2}/spectra/{kind}/{folder}"
    return f"{base}/{m}/spec-{padded}-{m}-{cat}.fits"


def astra_allstar_path(pipeline: str, *, release: str = "dr20", v_astra: str | None = None,
                       gz: bool = True) -> str:
    """SAS path of an astraAllStar<Pipeline> summary table (``gz``: the ``.fits.gz`` the data model's
    locations name; its DR20 access template names ``.fits``)."""
    rel = _release(release)
    v = _safe("v_astra", v_astra or rel.v_astra)
    known = {p.lower(): p for p in ASTRA_PIPELINES}
    name = known.get(str(pipeline).lower(), _safe("pipeline", pipeline))
    return f"{rel.name}/spectro/astra/{v}/summary/astraAllStar{name}-{v}.fits{'.gz' if gz else ''}"
