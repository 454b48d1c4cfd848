"""APOGEE (SDSS-III/IV DR12–DR17, SDSS-V DR19/DR20) as an instrument: grids, bitmasks, reference files.

Native grid: the apStar log-linear grid, log10 λ[Å] = 4.179 + 6e-6·i, i = 0 … 8574 (vacuum). Its three
detectors are segments given as wavelength ranges; they hold apStar pixels [246:3274] (blue),
[3585:6080] (green) and [6344:8335] (red), which are ASPCAP's. Sub-grids:

``aspcap``  7514 pixels: the segments with the detector gaps deleted (astroNN's input).
``payne``   7214 pixels: apStar [322:3242] + [3648:6048] + [6412:8306] (The Payne's grid).

Bitmasks: ``dr17`` APOGEE_PIXMASK (DR14–DR17 apStar/apVisit HDU3) and ``sdss5`` (SDSS-V apStar and
mwmStar/mwmVisit ``pixel_flags``: the apogee_drp PIXMASK keeps bits 0–14 of DR17 with the same
meanings). Default reject set: bits 0–7 and SIG_SKYLINE (12), as astroNN.

Reference files (from the ASPCAP/astroNN data products; found with
:func:`starlabels.core.reference.find_reference`, never bundled): the DR14/DR16/DR17 continuum masks
and the DR14 element windows on the ASPCAP grid, the Cannon continuum pixels and the Payne fit mask on
the Payne grid.
"""

from __future__ import annotations

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import log_linear_grid
from starlabels.core.instrument import Instrument
from starlabels.core.reference import ReferenceFile

CRVAL = 4.179
CDELT = 6e-6
N_PIXELS = 8575
#: Half-open apStar pixel ranges of the three detectors (blue, green, red) — ASPCAP's.
DETECTOR_PIXELS = {"blue": (246, 3274), "green": (3585, 6080), "red": (6344, 8335)}
#: Half-open apStar pixel ranges of The Payne's grid.
PAYNE_PIXELS = ((322, 3242), (3648, 6048), (6412, 8306))

PIXMASK_BITS: dict[str, int] = {
    "BADPIX": 0, "CRPIX": 1, "SATPIX": 2, "UNFIXABLE": 3, "BADDARK": 4, "BADFLAT": 5, "BADERR": 6,
    "NOSKY": 7, "LITTROW_GHOST": 8, "PERSIST_HIGH": 9, "PERSIST_MED": 10, "PERSIST_LOW": 11,
    "SIG_SKYLINE": 12, "SIG_TELLURIC": 13, "NOT_ENOUGH_PSF": 14,
}
DEFAULT_REJECT_BITS: tuple[str, ...] = (
    "BADPIX", "CRPIX", "SATPIX", "UNFIXABLE", "BADDARK", "BADFLAT", "BADERR", "NOSKY", "SIG_SKYLINE",
)
PIXMASK = PixelBitmask("APOGEE_PIXMASK", PIXMASK_BITS, DEFAULT_REJECT_BITS)
SDSS5_PIXMASK = PixelBitmask("SDSSV_APOGEE_PIXMASK", PIXMASK_BITS, DEFAULT_REJECT_BITS)


def _edge(i: float) -> float:
    """Wavelength (Å) half a pixel below apStar pixel ``i``: a segment edge between two pixels."""
    return float(10.0 ** (CRVAL + CDELT * (i - 0.5)))


SEGMENTS = {name: (_edge(a), _edge(b)) for name, (a, b) in DETECTOR_PIXELS.items()}
APSTAR = log_linear_grid("apstar", CRVAL, CDELT, N_PIXELS, SEGMENTS)
ASPCAP = APSTAR.segment_grid("aspcap")
PAYNE = APSTAR.subset(
    [i for a, b in PAYNE_PIXELS for i in range(a, b)], "payne"
)

_ASPCAP_SOURCE = "ASPCAP / astroNN data products (shared/data/apogee)"
INSTRUMENT = Instrument(
    name="apogee",
    grid=APSTAR,
    resolving_power=22500.0,
    bitmasks={"dr17": PIXMASK, "sdss5": SDSS5_PIXMASK},
    subgrids={"aspcap": ASPCAP, "payne": PAYNE},
    continuum_masks={
        "dr14": ReferenceFile("continuum_mask_dr14_7514.npy", "aspcap", source=_ASPCAP_SOURCE),
        "dr17": ReferenceFile("continuum_mask_dr17_7514.npy", "aspcap", source=_ASPCAP_SOURCE),
        "cannon": ReferenceFile("cannon_continuum_pixels_7214.npz", "payne", "pixels_cannon", _ASPCAP_SOURCE),
        "payne_fit": ReferenceFile("payne_fit_mask_7214.npz", "payne", "apogee_mask", _ASPCAP_SOURCE),
    },
    element_windows={
        "dr14": ReferenceFile("aspcap_element_windows_dr14_7514.npz", "aspcap", "windows", _ASPCAP_SOURCE),
    },
    description="SDSS APOGEE H-band spectrographs (APO 2.5 m and LCO du Pont), R ≈ 22,500",
)
