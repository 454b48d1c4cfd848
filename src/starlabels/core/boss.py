"""BOSS (SDSS-III/IV/V optical spectrographs) as an instrument.

Native grid: the coadd log-linear grid of SDSS-V mwmStar/mwmVisit files, log10 λ[Å] = 3.5523 + 1e-4·i,
i = 0 … 4647 (≈ 3566–10399 Å, vacuum), R ≈ 2,000 (1,560 at 3,700 Å to 2,650 at 9,000 Å). Segments:
the two arms, split at 6,000 Å where the dichroic hands over (``blue`` < 6,000 Å ≤ ``red``).

Bitmask ``SPPIXMASK`` (BOSS ``AND_MASK``/``OR_MASK`` and SDSS-V BOSS ``pixel_flags``; idlutils
``sdssMaskbits.par``): bits 0–12 are fibre-level, 16–28 pixel-level. Default reject set: a pixel is
unusable when its fibre was unplugged or badly traced/flattened/arc-calibrated, when it was fully
rejected, has no data, was rejected in the combination, sits under bright sky, or has a bad flux
factor.
"""

from __future__ import annotations

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import log_linear_grid
from starlabels.core.instrument import Instrument

CRVAL = 3.5523
CDELT = 1e-4
N_PIXELS = 4648
DICHROIC = 6000.0

SPPIXMASK_BITS: dict[str, int] = {
    "NOPLUG": 0, "BADTRACE": 1, "BADFLAT": 2, "BADARC": 3, "MANYBADCOLUMNS": 4, "MANYREJECTED": 5,
    "LARGESHIFT": 6, "BADSKYFIBER": 7, "NEARWHOPPER": 8, "WHOPPER": 9, "SMEARIMAGE": 10,
    "SMEARHIGHSN": 11, "SMEARMEDSN": 12,
    "NEARBADPIXEL": 16, "LOWFLAT": 17, "FULLREJECT": 18, "PARTIALREJECT": 19, "SCATTEREDLIGHT": 20,
    "CROSSTALK": 21, "NOSKY": 22, "BRIGHTSKY": 23, "NODATA": 24, "COMBINEREJ": 25, "BADFLUXFACTOR": 26,
    "BADSKYCHI": 27, "REDMONSTER": 28,
}
DEFAULT_REJECT_BITS: tuple[str, ...] = (
    "NOPLUG", "BADTRACE", "BADFLAT", "BADARC", "MANYBADCOLUMNS", "MANYREJECTED", "FULLREJECT",
    "NODATA", "COMBINEREJ", "BRIGHTSKY", "BADFLUXFACTOR",
)
SPPIXMASK = PixelBitmask("SPPIXMASK", SPPIXMASK_BITS, DEFAULT_REJECT_BITS)

_first, _last = 10.0**CRVAL, 10.0 ** (CRVAL + CDELT * (N_PIXELS - 1))
SEGMENTS = {"blue": (_first * (1 - 1e-6), DICHROIC), "red": (DICHROIC, _last * (1 + 1e-6))}
COADD = log_linear_grid("boss", CRVAL, CDELT, N_PIXELS, SEGMENTS)

INSTRUMENT = Instrument(
    name="boss",
    grid=COADD,
    resolving_power=2000.0,
    bitmasks={"sppixmask": SPPIXMASK},
    description="SDSS BOSS optical spectrographs (APO 2.5 m and LCO du Pont), R ≈ 2,000, 3,600–10,400 Å",
)
