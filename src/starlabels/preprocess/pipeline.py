"""``PreprocessConfig``: the preprocessing a model was trained with, stored in its config.json.

A trained model keeps this object (as ``to_dict()``) so inference repeats exactly what training did:

>>> cfg = PreprocessConfig.from_mask("continuum_mask_dr17_7514.npy")   # doctest: +SKIP
>>> x, x_err = cfg.apply(flux, error, bitmask)                          # doctest: +SKIP
>>> PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
True                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import DEFAULT_REJECT_BITS, PIXMASK_BITS, bits_to_value
from starlabels.preprocess.continuum import continuum_normalize, load_continuum_mask, mask_from_indices
from starlabels.preprocess.grids import APSTAR, ASPCAP
from starlabels.preprocess.masking import raw_flux

KINDS = ("continuum", "raw")
_BIT_NAMES = {v: k for k, v in PIXMASK_BITS.items()}


def _normalise_bits(bits: Iterable[str | int]) -> list[str | int]:
    """Bits as upper-case names where APOGEE_PIXMASK names them, else ints; validated."""
    out: list[str | int] = []
    for b in bits:
        if isinstance(b, str):
            name = b.upper()
            if name not in PIXMASK_BITS:
                raise ValueError(f"unknown APOGEE_PIXMASK bit {b!r}; known: {sorted(PIXMASK_BITS)}")
            item: str | int = name
        elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            bits_to_value([int(b)])  # range check
            item = _BIT_NAMES.get(int(b), int(b))
        else:
            raise ValueError(f"reject bits must be names or ints, got {b!r}")
        if item not in out:
            out.append(item)
    return out


@dataclass
class PreprocessConfig:
    """JSON-serialisable description of the preprocessing in front of a network.

    Attributes
    ----------
    kind:
        ``"continuum"`` (astroNN: :func:`~starlabels.preprocess.continuum.continuum_normalize`,
        output on the 7514-pixel ASPCAP grid) or ``"raw"`` (APOGEE Net:
        :func:`~starlabels.preprocess.masking.raw_flux`, output on the 8575-pixel apStar grid).
    degree:
        Chebyshev degree per detector (continuum only).
    reject_bits:
        APOGEE_PIXMASK bits (names; numbers for unnamed bits) that reject a pixel.
    continuum_pixels:
        Sorted indices of the continuum pixels on the ASPCAP grid (continuum only); ``None`` fits
        every usable pixel (not recommended).
    error_cap:
        Error cap in units of the spectrum's mean error (raw only); ``None``: no cap.
    on_failure:
        ``"raise"`` or ``"reject"`` for detectors without enough usable continuum pixels
        (continuum only; see ``continuum_normalize``).
    scale:
        Raw only: ``None`` (flux in the file's units, as APOGEE Net) or ``"median"`` (each
        spectrum's flux and usable errors divided by the median flux of its usable pixels, after
        the repair: brightness carries no label information, and a network should not have to
        learn that over a ~100× range of fluxes; the continuum shape is kept).
    continuum_weights:
        Continuum only: ``"ivar"`` (default: squared residuals weighted by 1/σ², rejected pixels
        left out) or ``"astronn"`` (astroNN's ``apogee_continuum`` exactly, for imported astroNN
        models: weights 1/(σ²+1e-8)², see :mod:`starlabels.preprocess.astronn_continuum`).
    """

    kind: str = "continuum"
    degree: int = 2
    reject_bits: list[str | int] = field(default_factory=lambda: list(DEFAULT_REJECT_BITS))
    continuum_pixels: list[int] | None = None
    error_cap: float | None = 5.0
    on_failure: str = "raise"
    scale: str | None = None
    continuum_weights: str = "ivar"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.degree, bool) or int(self.degree) != self.degree or self.degree < 0:
            raise ValueError(f"degree must be a non-negative integer, got {self.degree!r}")
        self.degree = int(self.degree)
        self.reject_bits = _normalise_bits(self.reject_bits)
        if self.continuum_pixels is not None:
            px = np.asarray(self.continuum_pixels)
            if px.dtype == np.bool_:
                if px.shape != (ASPCAP.n_pixels,):
                    raise ValueError(f"a boolean continuum mask must have shape ({ASPCAP.n_pixels},)")
                px = np.flatnonzero(px)
            try:
                mask = mask_from_indices(px.ravel())
            except InputDataError as exc:
                raise ValueError(str(exc)) from None
            self.continuum_pixels = np.flatnonzero(mask).tolist()
        if self.error_cap is not None:
            if not float(self.error_cap) > 0:
                raise ValueError(f"error_cap must be > 0 or None, got {self.error_cap!r}")
            self.error_cap = float(self.error_cap)
        if self.on_failure not in ("raise", "reject"):
            raise ValueError(f"on_failure must be 'raise' or 'reject', got {self.on_failure!r}")
        if self.scale not in (None, "median"):
            raise ValueError(f"scale must be None or 'median', got {self.scale!r}")
        if self.scale is not None and self.kind != "raw":
            raise ValueError("scale applies to the raw preprocessing only")
        if self.continuum_weights not in ("ivar", "astronn"):
            raise ValueError(
                f"continuum_weights must be 'ivar' or 'astronn', got {self.continuum_weights!r}"
            )
        if self.continuum_weights == "astronn" and (
            self.kind != "continuum" or self.continuum_pixels is None
        ):
            raise ValueError("continuum_weights='astronn' needs kind='continuum' and continuum_pixels")

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_mask(cls, mask: np.ndarray | str | Path, degree: int = 2, **kwargs: Any) -> PreprocessConfig:
        """Continuum config from a (7514,) bool mask or a ``.npy``/``.npz`` mask file."""
        if isinstance(mask, (str, Path)):
            mask = load_continuum_mask(mask)
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != (ASPCAP.n_pixels,):
            raise ValueError(f"mask must be a ({ASPCAP.n_pixels},) bool array, got {m.dtype} {m.shape}")
        return cls(kind="continuum", degree=degree, continuum_pixels=np.flatnonzero(m).tolist(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``.

        For hand-written configs (e.g. a training TOML) the key ``continuum_mask`` may name a
        ``.npy``/``.npz`` mask file instead of listing ``continuum_pixels``; it is read here, so
        :meth:`to_dict` then holds the pixel indices and no longer depends on the file.
        """
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing config must be a dict, got {type(d).__name__}")
        d = dict(d)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"continuum_mask"})
        if unknown:
            raise ValueError(f"unknown preprocessing config keys {unknown}; known: {sorted(names)}")
        if "continuum_mask" in d:
            path = d.pop("continuum_mask")
            if d.get("continuum_pixels") is not None:
                raise ValueError("give either continuum_mask (a file) or continuum_pixels, not both")
            if path is not None:
                d["continuum_pixels"] = np.flatnonzero(load_continuum_mask(path)).tolist()
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (ints, floats, strings, lists, None)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def output_grid(self) -> str:
        """Grid of the network input: ``"aspcap"`` (continuum) or ``"apstar"`` (raw)."""
        return "aspcap" if self.kind == "continuum" else "apstar"

    @property
    def n_pixels(self) -> int:
        """Length of the network input: 7514 (continuum) or 8575 (raw)."""
        return ASPCAP.n_pixels if self.kind == "continuum" else APSTAR.n_pixels

    @property
    def continuum_mask(self) -> np.ndarray | None:
        """(7514,) bool continuum mask, or ``None``."""
        return None if self.continuum_pixels is None else mask_from_indices(self.continuum_pixels)

    # ------------------------------------------------------------------ apply

    def apply(self, flux, error, bitmask=None) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess spectra: (N, 8575) apStar-grid (or (8575,)) flux, error and optional bitmask
        → float32 ``(flux, error)`` of shape (N, :attr:`n_pixels`) (1-D for 1-D input).

        The continuum kind also accepts 7514-pixel ASPCAP-grid input; the raw kind needs apStar.
        """
        if self.kind == "continuum" and self.continuum_weights == "astronn":
            from starlabels.preprocess.astronn_continuum import astronn_continuum_normalize

            f, e = astronn_continuum_normalize(
                flux, error, bitmask, continuum_mask=self.continuum_mask, degree=self.degree,
                bits=self.reject_bits,
            )
        elif self.kind == "continuum":
            f, e = continuum_normalize(
                flux, error, bitmask, continuum_mask=self.continuum_mask, degree=self.degree,
                bits=self.reject_bits, on_failure=self.on_failure,  # type: ignore[arg-type]
            )
        else:
            n = np.shape(flux)[-1] if np.ndim(flux) else 0
            if n != APSTAR.n_pixels:
                raise InputDataError(
                    f"the raw preprocessing needs apStar-grid spectra ({APSTAR.n_pixels} pixels), got {n}"
                )
            f, e = raw_flux(flux, error, bitmask, error_cap=self.error_cap, bits=self.reject_bits)
            if self.scale == "median":
                f, e = median_scale(f, e)
        return f.astype(np.float32, copy=False), e.astype(np.float32, copy=False)


def median_scale(flux: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide (N, P) raw-path flux and errors by each spectrum's median usable flux.

    Usable: error below ``BAD_PIXEL_ERROR`` (the repair's marker); rejected pixels keep that error.
    A spectrum whose median is not positive and finite is left as it is.
    """
    from starlabels.preprocess.masking import is_rejected_error

    f = np.asarray(flux)
    e = np.asarray(error)
    squeeze = f.ndim == 1
    f2, e2 = np.atleast_2d(f), np.atleast_2d(e)
    rej = is_rejected_error(e2)
    med = np.median(f2, axis=-1) if not rej.any() else _nanmedian_rows(f2, rej)
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0).astype(f2.dtype)[:, None]
    out_f = f2 / med
    out_e = np.where(rej, e2, e2 / med).astype(e2.dtype, copy=False)
    return (out_f[0], out_e[0]) if squeeze else (out_f, out_e)


def _nanmedian_rows(f: np.ndarray, rej: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with every pixel rejected
        return np.nanmedian(np.where(rej, np.nan, f), axis=-1)
