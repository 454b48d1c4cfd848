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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.instrument import Instrument, find_grid, get
from starlabels.errors import InputDataError
from starlabels.preprocess.continuum import continuum_normalise, output_grid
from starlabels.preprocess.continuum_masks import load_continuum_mask, mask_from_indices
from starlabels.preprocess.masking import raw_flux
from starlabels.statistics import nanmedian_rows

KINDS = ("continuum", "raw")


def _normalise_bits(bits: Iterable[str | int] | None, bitmask: PixelBitmask) -> list[str | int]:
    """Bits as upper-case names where ``bitmask`` names them, else ints; validated. ``None`` gives
    the bitmask's default reject set."""
    names_by_bit = {v: k for k, v in bitmask.bits.items()}
    out: list[str | int] = []
    for b in bitmask.default_reject if bits is None else bits:
        if isinstance(b, str):
            name = b.upper()
            if name not in bitmask.bits:
                raise ValueError(f"unknown {bitmask.name} bit {b!r}; known: {sorted(bitmask.bits)}")
            item: str | int = name
        elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            bitmask.number(int(b))  # range check
            item = names_by_bit.get(int(b), int(b))
        else:
            raise ValueError(f"reject bits must be names or ints, got {b!r}")
        if item not in out:
            out.append(item)
    return out


def grid_reference(grid: Grid) -> dict[str, Any]:
    """JSON for a grid: ``{instrument, name, n_pixels, checksum}`` for a built-in or registered grid,
    else the grid itself (:meth:`Grid.to_dict`)."""
    known = find_grid(grid)
    if known is None:
        return grid.to_dict()
    inst, name = known
    return {"instrument": inst.name, "name": name, "n_pixels": grid.n_pixels, "checksum": grid.checksum}


def grid_from_reference(ref: Any, instrument: Instrument | None = None) -> Grid:
    """Inverse of :func:`grid_reference` (also takes a Grid, a grid name of ``instrument``, or a
    ``Grid.to_dict()``); a stored checksum that does not match raises ``InputDataError``."""
    if isinstance(ref, Grid):
        return ref
    if isinstance(ref, str):
        return (instrument or get("apogee")).get_grid(ref)
    if not isinstance(ref, dict):
        raise InputDataError(f"not a grid reference: {ref!r}")
    if "wavelength" in ref or "log_linear" in ref:
        return Grid.from_dict(ref)
    try:
        inst = get(ref.get("instrument") or (instrument.name if instrument else "apogee"))
        grid = inst.get_grid(ref["name"])
    except (KeyError, ValueError) as exc:
        raise InputDataError(f"unknown grid reference {ref!r}: {exc}") from None
    if ref.get("checksum") not in (None, grid.checksum):
        raise InputDataError(
            f"grid {ref['name']!r} of {inst.name!r}: stored checksum {ref['checksum']} differs from this "
            f"starlabels' {grid.describe()}"
        )
    return grid


@dataclass
class PreprocessConfig:
    """JSON-serialisable description of the preprocessing in front of a network.

    Attributes
    ----------
    kind:
        ``"continuum"`` (astroNN: :func:`~starlabels.preprocess.continuum.continuum_normalise`, per
        segment; output on the input grid's segment grid, for APOGEE the ASPCAP grid) or ``"raw"``
        (APOGEE Net: :func:`~starlabels.preprocess.masking.raw_flux`, output on the input grid).
    degree:
        Chebyshev degree per detector (continuum only).
    reject_bits:
        Bits of the instrument's bitmask (names; numbers for unnamed bits) that reject a pixel;
        ``None`` (the default) stores the instrument's default reject set.
    continuum_pixels:
        Sorted indices of the continuum pixels on the output grid (continuum only); ``None`` fits
        every usable pixel (not recommended).
    error_cap:
        Error cap in units of the spectrum's mean error (raw only); ``None``: no cap.
    on_failure:
        ``"raise"`` or ``"reject"`` for detectors without enough usable continuum pixels
        (continuum only; see ``continuum_normalise``).
    scale:
        Raw only: ``None`` (flux in the file's units, as APOGEE Net) or ``"median"`` (each
        spectrum's flux and usable errors divided by the median flux of its usable pixels, after
        the repair: brightness carries no label information, and a network should not have to
        learn that over a ~100× range of fluxes; the continuum shape is kept).
    instrument:
        Name of the instrument (``starlabels.instruments.get``) whose bitmask and grids apply.
    input_grid:
        The grid the raw spectra must be on: ``None`` (the instrument's native grid), a grid name
        of the instrument, a :class:`~starlabels.core.grid.Grid`, or a stored reference. Stored as
        :func:`grid_reference` (instrument, name and checksum, or the whole grid).
    continuum_weights:
        Continuum only: ``"ivar"`` (default: squared residuals weighted by 1/σ², rejected pixels
        left out) or ``"astronn"`` (astroNN's ``apogee_continuum`` exactly, for imported astroNN
        models: weights 1/(σ²+1e-8)², see :mod:`starlabels.preprocess.astronn_continuum`).
    """

    kind: str = "continuum"
    degree: int = 2
    reject_bits: list[str | int] | None = None
    continuum_pixels: list[int] | None = None
    error_cap: float | None = 5.0
    on_failure: str = "raise"
    scale: str | None = None
    instrument: str = "apogee"
    input_grid: Any = None
    continuum_weights: str = "ivar"

    def __post_init__(self) -> None:
        try:
            inst = get(self.instrument)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        self.instrument = inst.name
        try:
            grid = inst.grid if self.input_grid is None else grid_from_reference(self.input_grid, inst)
        except InputDataError as exc:
            raise ValueError(str(exc)) from None
        self._grid = grid
        self._bitmask = inst.bitmask()
        self.input_grid = grid_reference(grid)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.degree, bool) or int(self.degree) != self.degree or self.degree < 0:
            raise ValueError(f"degree must be a non-negative integer, got {self.degree!r}")
        self.degree = int(self.degree)
        self.reject_bits = _normalise_bits(self.reject_bits, self._bitmask)
        if self.continuum_pixels is not None:
            n_out = self.output_grid.n_pixels
            px = np.asarray(self.continuum_pixels)
            if px.dtype == np.bool_:
                if px.shape != (n_out,):
                    raise ValueError(f"a boolean continuum mask must have shape ({n_out},)")
                px = np.flatnonzero(px)
            try:
                mask = mask_from_indices(px.ravel(), n_pixels=n_out)
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
        if self.continuum_weights == "astronn" and self.instrument != "apogee":
            raise ValueError(
                "continuum_weights='astronn' is astroNN's APOGEE continuum; it needs instrument='apogee'"
            )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_mask(cls, mask: np.ndarray | str | Path, degree: int = 2, **kwargs: Any) -> PreprocessConfig:
        """Continuum config from a bool mask on the output grid (APOGEE: the ASPCAP grid) or a
        ``.npy``/``.npz`` mask file; ``kwargs`` (e.g. ``instrument``, ``input_grid``) as the constructor."""
        grid_kwargs = {k: kwargs[k] for k in ("instrument", "input_grid") if k in kwargs}
        out = cls(kind="continuum", degree=degree, **grid_kwargs).output_grid
        if isinstance(mask, (str, Path)):
            mask = load_continuum_mask(mask, grid=out)
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != (out.n_pixels,):
            raise ValueError(f"mask must be a ({out.n_pixels},) bool array, got {m.dtype} {m.shape}")
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
                grid_kwargs = {k: d[k] for k in ("kind", "instrument", "input_grid") if k in d}
                mask = load_continuum_mask(path, grid=cls(**grid_kwargs).output_grid)
                d["continuum_pixels"] = np.flatnonzero(mask).tolist()
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (ints, floats, strings, lists, None), the grid included."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def grid(self) -> Grid:
        """The grid raw input must be on."""
        return self._grid

    @property
    def bitmask(self) -> PixelBitmask:
        """The instrument's bitmask definition the reject bits refer to."""
        return self._bitmask

    @property
    def output_grid(self) -> Grid:
        """Grid of the network input: the input grid's segment grid (continuum; APOGEE: ASPCAP) or
        the input grid (raw)."""
        return output_grid(self._grid) if self.kind == "continuum" else self._grid

    @property
    def n_pixels(self) -> int:
        """Length of the network input (pixels of :attr:`output_grid`)."""
        return self.output_grid.n_pixels

    @property
    def continuum_mask(self) -> np.ndarray | None:
        """(n_pixels,) bool continuum mask on the output grid, or ``None``."""
        if self.continuum_pixels is None:
            return None
        return mask_from_indices(self.continuum_pixels, n_pixels=self.output_grid.n_pixels)

    def accepts(self, grid: Grid) -> bool:
        """True when raw spectra on ``grid`` can be given to :meth:`apply` as they are."""
        return grid.same_as(self._grid) or (self.kind == "continuum" and grid.same_as(self.output_grid))

    # ------------------------------------------------------------------ apply

    def input_grid_for(self, n_pixels: int, grid: Grid | None = None) -> Grid:
        """The grid of raw input with ``n_pixels`` columns (checked against ``grid`` when given):
        the config's input grid, or — continuum kind — its output grid (already gap-free input).
        Raises ``InputDataError`` naming both grids otherwise."""
        candidates = [self._grid] + ([self.output_grid] if self.kind == "continuum" else [])
        if grid is not None:
            for g in candidates:
                if grid.same_as(g):
                    return g
            raise InputDataError(
                f"spectra on grid {grid.describe()} cannot be preprocessed for this model, whose input "
                f"grid is {self._grid.describe()}; resample them onto it (resample='linear' or "
                "'flux-conserving')"
            )
        for g in candidates:
            if g.n_pixels == n_pixels:
                return g
        raise InputDataError(
            f"spectra have {n_pixels} pixels but this preprocessing takes grid {self._grid.describe()}"
            + (f" or {self.output_grid.describe()}" if self.kind == "continuum" else "")
        )

    def apply(
        self, flux, error, bitmask=None, grid: Grid | None = None, *, rejected: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess spectra: (N, P) (or (P,)) flux, error and optional bitmask on the input grid
        → float32 ``(flux, error)`` of shape (N, :attr:`n_pixels`) (1-D for 1-D input).

        The continuum kind also accepts input already on its output grid (APOGEE: the ASPCAP grid).
        ``grid``: the spectra's grid, checked by checksum (default: recognised by pixel count).
        ``rejected``: optional bool array shaped like ``flux``, ``rejected_pixels(flux, error,
        bitmask, self.reject_bits, self.bitmask)`` when the caller has it already; the raw kind and
        the continuum kind then do not test the pixels again (astroNN's continuum weights ignore it).
        """
        n = np.shape(flux)[-1] if np.ndim(flux) else 0
        g = self.input_grid_for(n, grid)
        if self.kind == "continuum" and self.continuum_weights == "astronn":
            from starlabels.preprocess.astronn_continuum import astronn_continuum_normalise

            f, e = astronn_continuum_normalise(
                flux, error, bitmask, continuum_mask=self.continuum_mask, degree=self.degree,
                bits=self.reject_bits,
            )
        elif self.kind == "continuum":
            f, e = continuum_normalise(
                flux, error, bitmask, continuum_mask=self.continuum_mask, degree=self.degree,
                bits=self.reject_bits, on_failure=self.on_failure,  # type: ignore[arg-type]
                grid=g, bitmask_def=self._bitmask, rejected=rejected,
            )
        else:
            f, e = raw_flux(flux, error, bitmask, error_cap=self.error_cap, bits=self.reject_bits, grid=g,
                            bitmask_def=self._bitmask, rejected=rejected)
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
    """(N,) median of each row's accepted pixels; NaN (no warning) for a row with every pixel rejected."""
    return nanmedian_rows(np.where(rej, np.nan, f))
