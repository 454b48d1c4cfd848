"""Noise augmentation: lower a spectrum's signal-to-noise ratio by adding Gaussian noise.

A network trained only on SNR > 200 spectra has never seen the noise of an SNR 20–60 visit and
degrades 2–3× on them (``bench/results/accuracy.md``), while a χ² fitter such as The Cannon,
which weights pixels by their inverse variance, hardly degrades. Training on copies of the
high-SNR spectra degraded to a lower SNR teaches the network what noise looks like without any
new spectra, and lets its variance head learn how its error grows with the noise.

A spectrum with flux f_i and errors σ_i (any units: raw, median-normalised or continuum-
normalised flux — only the ratio f/σ matters) has SNR₀ = median_i(f_i/σ_i) over its usable
pixels. Lowering it to a target SNR s ≤ SNR₀ scales every error by k = SNR₀/s and adds noise of
variance σ_i²(k² − 1), so that the total noise is k σ_i: the error spectrum keeps its shape (sky
lines, throughput, bad regions). Spectra already at or below the target are left unchanged (k = 1).

Usable pixels: finite flux and error, error > 0, error ≤ ``max_error_ratio`` × the spectrum's
median error and, when a bitmask is given, none of the rejection bits set (bits of
``bitmask_def``, the instrument's :class:`~starlabels.core.PixelBitmask`, e.g. BOSS SPPIXMASK;
APOGEE_PIXMASK when not given). Other pixels (the huge
placeholder errors APOGEE gives dead pixels, NaN pixels, flagged pixels) are passed through
unchanged: they are rejected later by preprocessing, and adding noise of their size would only
inject garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from starlabels.core import PixelBitmask
from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import bad_pixels
from starlabels.preprocess.masking import is_rejected_error

#: APOGEE_PIXMASK bits by name or number; None: the library's default rejection bits.
Bits = Sequence[str | int] | None

__all__ = ["NoiseAugmentation", "degrade_snr", "spectrum_snr"]


def _usable(
    flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None, reject_bits: Bits,
    max_error_ratio: float, bitmask_def: PixelBitmask | None = None,
) -> np.ndarray:
    ok = np.isfinite(flux) & np.isfinite(error) & (error > 0) & ~is_rejected_error(error)
    if bitmask is not None:
        if bitmask_def is None:
            ok &= ~bad_pixels(bitmask, reject_bits)
        else:
            ok &= ~bitmask_def.rejected(bitmask, None if reject_bits is None else list(reject_bits))
    med = np.median(np.where(ok, error, np.inf), axis=-1, keepdims=True)  # inf sorts last
    # a spectrum with fewer than half its pixels usable has an infinite "median": use its usable max
    med = np.where(np.isfinite(med), med, np.max(np.where(ok, error, 0.0), axis=-1, keepdims=True))
    return ok & (error <= max_error_ratio * med)


def spectrum_snr(
    flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None = None, *, reject_bits: Bits = None,
    max_error_ratio: float = 100.0, bitmask_def: PixelBitmask | None = None,
) -> np.ndarray:
    """Median f/σ over each spectrum's usable pixels: (N, P) → (N,) (NaN without usable pixels)."""
    f = np.asarray(flux, np.float64)
    e = np.asarray(error, np.float64)
    return _snr(f, e, _usable(f, e, bitmask, reject_bits, max_error_ratio, bitmask_def))


def _snr(f: np.ndarray, e: np.ndarray, ok: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, f / np.where(ok, e, 1.0), np.nan)
    out = np.full(f.shape[:-1], np.nan)
    has = ok.any(axis=-1)
    if has.any():
        out[has] = np.nanmedian(ratio[has], axis=-1)
    return out


def degrade_snr(
    flux: np.ndarray,
    error: np.ndarray,
    target_snr: np.ndarray | float,
    rng: np.random.Generator,
    *,
    bitmask: np.ndarray | None = None,
    reject_bits: Bits = None,
    max_error_ratio: float = 100.0,
    bitmask_def: PixelBitmask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisier copies of spectra: each spectrum's SNR lowered to its ``target_snr``.

    Parameters
    ----------
    flux, error
        (N, P) arrays (float32 or float64; returned in the same dtype as ``flux``).
    target_snr
        (N,) or scalar target median SNR; ``inf`` or values ≥ the current SNR leave a spectrum as
        it is.
    rng
        numpy Generator for the noise (N × P standard normals are drawn whatever the targets, so
        the stream does not depend on them).
    bitmask, reject_bits, bitmask_def
        Optional (N, P) bitmask of the instrument ``bitmask_def`` (default APOGEE_PIXMASK); pixels
        with any of ``reject_bits`` (names or numbers; default the bitmask's default rejection
        bits) are left unchanged.

    Returns
    -------
    (flux, error) — new arrays; the inputs are not modified.
    """
    f = np.asarray(flux)
    e = np.asarray(error)
    if f.ndim != 2 or f.shape != e.shape:
        raise InputDataError(
            f"degrade_snr needs (N, P) flux and error of one shape, got {f.shape}, {e.shape}"
        )
    target = np.broadcast_to(np.asarray(target_snr, np.float64), (f.shape[0],))
    if np.any(~(target > 0)):
        raise InputDataError("target SNRs must be > 0")
    ok = _usable(f, e, bitmask, reject_bits, max_error_ratio, bitmask_def)
    snr = _snr(f, e, ok)
    k = np.where(np.isfinite(snr) & (snr > target), snr / target, 1.0)
    extra = np.sqrt(k * k - 1.0).astype(f.dtype)[:, None]
    noise = rng.standard_normal(f.shape, dtype=np.float32 if f.dtype == np.float32 else np.float64)
    out_f = np.where(ok, f + e * extra * noise, f).astype(f.dtype, copy=False)
    out_e = np.where(ok, e * k.astype(e.dtype)[:, None], e).astype(e.dtype, copy=False)
    return out_f, out_e


@dataclass(frozen=True)
class NoiseAugmentation:
    """Random SNR degradation of training batches.

    ``snr = (lo, hi)``: each augmented spectrum gets a target SNR drawn log-uniformly in
    [lo, hi]; ``fraction`` of the rows of a batch are augmented (the others keep their own noise).
    Spectra already noisier than their target are unchanged, so with a training set at SNR
    200–400, ``snr = (15, 400)`` degrades most of them to the whole 15–200 range. ``dev``: the
    trainer scores its dev loss on one fixed degraded copy of the dev rows (the same noise every
    epoch), so early stopping follows the accuracy over the augmented SNR range.
    """

    snr: tuple[float, float]
    fraction: float = 1.0
    dev: bool = True
    reject_bits: tuple[str | int, ...] | None = None
    max_error_ratio: float = 100.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.snr)
        if not 0 < lo <= hi:
            raise InputDataError(f"augmentation SNR range must satisfy 0 < lo <= hi, got {self.snr}")
        if not 0 <= self.fraction <= 1:
            raise InputDataError(f"augmentation fraction must be in [0, 1], got {self.fraction}")
        object.__setattr__(self, "snr", (lo, hi))
        if self.reject_bits is not None:
            object.__setattr__(self, "reject_bits", tuple(self.reject_bits))

    @classmethod
    def from_value(cls, value: NoiseAugmentation | Sequence[float] | dict | None) -> NoiseAugmentation | None:
        """None, an instance, ``(lo, hi)`` or ``{"snr": [lo, hi], "fraction": p, ...}``."""
        if value is None or isinstance(value, NoiseAugmentation):
            return value
        if isinstance(value, dict):
            return cls(**{**value, "snr": tuple(value["snr"])})
        return cls(snr=tuple(value))  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return {"snr": list(self.snr), "fraction": self.fraction, "dev": self.dev,
                "reject_bits": None if self.reject_bits is None else list(self.reject_bits),
                "max_error_ratio": self.max_error_ratio}

    def targets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) target SNRs: log-uniform in the range for a ``fraction`` of rows, inf elsewhere."""
        lo, hi = self.snr
        snr = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        keep = rng.random(n) >= self.fraction
        return np.where(keep, np.inf, snr)

    def __call__(
        self, flux: np.ndarray, error: np.ndarray, rng: np.random.Generator,
        bitmask: np.ndarray | None = None, bitmask_def: PixelBitmask | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augmented (flux, error) for a block of spectra (N, P); ``bitmask_def`` is the instrument's
        bitmask that ``bitmask`` holds (default APOGEE_PIXMASK)."""
        return degrade_snr(flux, error, self.targets(len(flux), rng), rng, bitmask=bitmask,
                           reject_bits=self.reject_bits, max_error_ratio=self.max_error_ratio,
                           bitmask_def=bitmask_def)
