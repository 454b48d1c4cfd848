"""Wavelength grids as data: a wavelength array and its named segments.

A :class:`Grid` is the pixel axis of a spectrum: ``wavelength`` (P,) in vacuum Å, strictly
increasing, and ``segments``, an ordered mapping of segment name (a detector or a spectrograph arm)
to a half-open wavelength range ``[λ_min, λ_max)`` in Å. A pixel belongs to the segment whose range
holds its wavelength; pixels in no segment are gaps (unused by continuum fits and dropped by
:meth:`Grid.segment_grid`). Segments are contiguous in pixel index and do not overlap.

Grids are identified by a checksum of their wavelength array, so a grid can be stored with the data
(HDF5 datasets, preprocessing configs, model folders: :meth:`Grid.to_dict`) and compared later
without trusting a name or a pixel count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from starlabels.errors import InputDataError

__all__ = ["Grid", "from_wavelength", "log_linear_grid"]

#: Relative tolerance when matching the pixels of two grids (1e-9 of λ ≈ 1.6e-5 Å in the H band).
MATCH_RTOL = 1e-9


def _as_wavelength(wavelength: Any, what: str) -> np.ndarray:
    w = np.asarray(wavelength, dtype=np.float64)
    if w.ndim != 1 or w.size < 2:
        raise InputDataError(f"{what}: wavelength must be a 1-D array of ≥ 2 values, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise InputDataError(f"{what}: wavelength must be finite and > 0")
    steps = np.diff(w)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InputDataError(
            f"{what}: wavelength is not strictly increasing (pixel {i + 1}: {w[i + 1]!r} Å after {w[i]!r} Å)"
        )
    w = w.copy()
    w.setflags(write=False)
    return w


@dataclass(frozen=True, eq=False)
class Grid:
    """A wavelength grid: ``wavelength`` (P,) vacuum Å and ``segments`` name → (λ_min, λ_max) Å.

    ``log_linear`` records ``(crval, cdelt)`` when λ = 10**(crval + cdelt·i) exactly (it makes
    :meth:`to_dict` compact); ``None`` otherwise.
    """

    name: str
    wavelength: np.ndarray
    segments: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    log_linear: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        w = _as_wavelength(self.wavelength, f"grid {self.name!r}")
        object.__setattr__(self, "wavelength", w)
        whole = {"all": (float(w[0]), float(np.nextafter(w[-1], np.inf)))}
        segs = dict(self.segments) if self.segments else whole
        clean: dict[str, tuple[float, float]] = {}
        for key, rng in segs.items():
            lo, hi = (float(x) for x in rng)
            if not lo < hi:
                raise InputDataError(f"grid {self.name!r}: segment {key!r} has λ_min {lo} ≥ λ_max {hi}")
            clean[str(key)] = (lo, hi)
        object.__setattr__(self, "segments", clean)
        slices = self.segment_slices
        names = list(clean)
        for i in range(len(slices) - 1):
            if slices[i].stop > slices[i + 1].start:
                raise InputDataError(
                    f"grid {self.name!r}: segments {names[i]!r} and {names[i + 1]!r} overlap or are "
                    "out of order"
                )
        empty = [k for k, s in zip(clean, slices, strict=True) if s.stop <= s.start]
        if empty:
            raise InputDataError(f"grid {self.name!r}: segment(s) {empty} hold no pixel")

    # ------------------------------------------------------------------ views

    @property
    def n_pixels(self) -> int:
        return int(self.wavelength.shape[0])

    @cached_property
    def checksum(self) -> str:
        """16 hex digits of the SHA-256 of the float64 wavelength array (little-endian bytes)."""
        return hashlib.sha256(self.wavelength.astype("<f8").tobytes()).hexdigest()[:16]

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(self.segments)

    @cached_property
    def segment_slices(self) -> tuple[slice, ...]:
        """One contiguous index slice per segment (pixels with λ_min ≤ λ < λ_max), in order."""
        out = []
        for lo, hi in self.segments.values():
            a = int(np.searchsorted(self.wavelength, lo, side="left"))
            b = int(np.searchsorted(self.wavelength, hi, side="left"))
            out.append(slice(a, b))
        return tuple(out)

    def in_segments(self) -> np.ndarray:
        """(P,) bool: True for pixels inside a segment."""
        inside = np.zeros(self.n_pixels, bool)
        for sl in self.segment_slices:
            inside[sl] = True
        return inside

    def describe(self) -> str:
        """``name (P px, λ0–λ1 Å, checksum)`` for messages."""
        return (f"{self.name!r} ({self.n_pixels} px, {self.wavelength[0]:.2f}–{self.wavelength[-1]:.2f} Å, "
                f"checksum {self.checksum})")

    def __repr__(self) -> str:
        return f"Grid({self.describe()}, segments={list(self.segments)})"

    def same_as(self, other: Grid) -> bool:
        """True when both grids have the same wavelength array (by checksum)."""
        return isinstance(other, Grid) and self.checksum == other.checksum

    # ------------------------------------------------------------------ derived grids

    def subset(self, index: Any, name: str) -> Grid:
        """The grid of ``self``'s pixels at ``index`` (ints, a slice or a (P,) bool mask), in order.

        Segments keep their ranges (clipped to the pixels kept); segments left empty are dropped.
        """
        idx = np.arange(self.n_pixels)[index] if isinstance(index, slice) else np.asarray(index)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n_pixels,):
                raise InputDataError(f"a boolean subset of grid {self.name!r} needs shape ({self.n_pixels},)")
            idx = np.flatnonzero(idx)
        w = self.wavelength[idx]
        segs = {}
        for key, (lo, hi) in self.segments.items():
            inside = (w >= lo) & (w < hi)
            if inside.any():
                segs[key] = (lo, hi)
        log_lin = None
        if self.log_linear is not None and idx.size and np.all(np.diff(idx) == 1):
            crval, cdelt = self.log_linear
            log_lin = (crval + cdelt * int(idx[0]), cdelt)
        return Grid(name, w, segs, log_lin)

    def segment_grid(self, name: str | None = None) -> Grid:
        """The grid of the pixels inside segments (gaps deleted)."""
        return self.subset(self.in_segments(), name or f"{self.name}-segments")

    def positions_in(self, other: Grid) -> np.ndarray | None:
        """(P,) int: the index in ``other`` of each of this grid's pixels, or ``None`` when some pixel of
        this grid is not a pixel of ``other`` (to a relative tolerance of 1e-9)."""
        pos = np.searchsorted(other.wavelength, self.wavelength)
        pos = np.clip(pos, 0, other.n_pixels - 1)
        lower = np.clip(pos - 1, 0, other.n_pixels - 1)
        lower_closer = np.abs(other.wavelength[lower] - self.wavelength) < np.abs(
            other.wavelength[pos] - self.wavelength
        )
        near = np.where(lower_closer, lower, pos)
        ok = np.abs(other.wavelength[near] - self.wavelength) <= MATCH_RTOL * self.wavelength
        return near if ok.all() else None

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``name``, ``n_pixels``, ``checksum``, ``segments``, and ``log_linear``
        ``{crval, cdelt}`` when the grid is log-linear, else the full ``wavelength`` list."""
        d: dict[str, Any] = {
            "name": self.name, "n_pixels": self.n_pixels, "checksum": self.checksum,
            "segments": {k: [lo, hi] for k, (lo, hi) in self.segments.items()},
        }
        if self.log_linear is not None:
            d["log_linear"] = {"crval": self.log_linear[0], "cdelt": self.log_linear[1]}
        else:
            d["wavelength"] = self.wavelength.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict`; raises ``InputDataError`` when the stored checksum does not match."""
        try:
            name = str(d["name"])
            segs = {k: (float(v[0]), float(v[1])) for k, v in dict(d.get("segments") or {}).items()}
            if "log_linear" in d:
                ll = d["log_linear"]
                grid = log_linear_grid(name, float(ll["crval"]), float(ll["cdelt"]), int(d["n_pixels"]), segs)
            else:
                grid = cls(name, np.asarray(d["wavelength"], np.float64), segs)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"not a grid description: {exc!r}") from None
        stored = d.get("checksum")
        if stored is not None and stored != grid.checksum:
            raise InputDataError(
                f"grid {name!r}: stored checksum {stored} does not match its wavelengths ({grid.checksum})"
            )
        return grid


def log_linear_grid(
    name: str, crval: float, cdelt: float, n_pixels: int,
    segments: Mapping[str, tuple[float, float]] | None = None,
) -> Grid:
    """A log-linear grid: λ_i = 10**(crval + cdelt·i) Å, i = 0 … n_pixels−1."""
    w = 10.0 ** (float(crval) + float(cdelt) * np.arange(int(n_pixels)))
    return Grid(name, w, dict(segments or {}), (float(crval), float(cdelt)))


def from_wavelength(
    wavelength: Any, segments: Mapping[str, tuple[float, float]] | None = None, name: str = "custom"
) -> Grid:
    """A grid from any wavelength array (vacuum Å, strictly increasing); one segment ``"all"`` by default."""
    return Grid(name, _as_wavelength(wavelength, f"grid {name!r}"), dict(segments or {}))
