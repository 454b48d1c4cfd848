"""``starlabels.predict``: labels, uncertainties and quality flags for arrays of spectra.

The trained model's own preprocessing (``PreprocessConfig``), spectrum scaler and label scaler are
applied automatically, so the input is raw flux on the model's input grid (APOGEE models: the apStar
grid, as read from apStar files) — or, with ``preprocessed=True``, flux already on the network's input
grid. Spectra on another grid are given with their grid (``wavelength=``/``grid=``, or as
:class:`~starlabels.io.Spectrum` objects from :func:`starlabels.io.read_spectra`) and are resampled
onto the model's grid when ``resample`` asks for it, else refused naming both grids
(:mod:`starlabels.inference.grid_input`). Spectra are processed in chunks of
``PredictOptions.chunk_size`` rows (preprocessing + network), so memory stays bounded for any N;
the next chunk is preprocessed in a background thread while the network runs on the current one
(:func:`starlabels.inference.prefetch.prefetched`; preprocessing draws no random numbers, so the
results are the same as one after the other). Spectra can also be prepared ahead of the call
(:mod:`~starlabels.inference.prepared_spectra`), as catalog runs do in their reading thread.

This module is the public function; the pieces behind it live in their own modules:
:mod:`~starlabels.inference.inference_model` (loading/resolving a model),
:mod:`~starlabels.inference.fast_network` (the faster, identical inference copy of the network),
:mod:`~starlabels.inference.prepare` (one chunk → network input),
:mod:`~starlabels.inference.uncertainty` (the uncertainty methods),
:mod:`~starlabels.inference.finish` (calibration and flags → :class:`Prediction`),
:mod:`~starlabels.inference.method_predict` (The Cannon / Payne instead of a network) and
:mod:`~starlabels.inference.predict_options` (:class:`PredictOptions`).

Bad input never yields a silent wrong number:

- wrong pixel count, mismatched shapes, non-numeric arrays, spectra on another grid without
  ``resample`` → :class:`~starlabels.errors.InputDataError`;
- a spectrum without a usable pixel (NaN-only, no finite positive error, fully masked) → its row is
  kept with NaN labels and flag ``INVALID_SPECTRUM``;
- a non-finite network output → NaN and flag ``NONFINITE_OUTPUT``;
- a model folder without its config → :class:`~starlabels.errors.ModelFormatError` (from
  :func:`starlabels.load_model`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any

import numpy as np
import torch

from starlabels.errors import InputDataError, StarlabelsError
from starlabels.inference import flags as flag_bits
from starlabels.inference import grid_input
from starlabels.inference import uncertainty as uncertainty_methods
from starlabels.inference.finish import finish_prediction
from starlabels.inference.inference_model import resolve
from starlabels.inference.label_coverage import embed_input
from starlabels.inference.method_predict import predict_method
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prediction import Prediction
from starlabels.inference.prefetch import prefetched
from starlabels.inference.prepared_spectra import PreparedSpectra, iter_prepared
from starlabels.inference.uncertainty_calibration import calibration_info
from starlabels.utils import get_device, on_device, progress

__all__ = [
    "MODEL_DEFAULT",
    "UNCERTAINTY_METHODS",
    "PredictOptions",
    "Prediction",
    "default_uncertainty",
    "predict",
]

#: Accepted values of ``uncertainty``.
UNCERTAINTY_METHODS: tuple[str | None, ...] = (None, *uncertainty_methods.METHODS)


class _ModelDefault:
    """Sentinel of :func:`predict`'s ``uncertainty`` when none is given: the model's own method."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


#: ``uncertainty`` not given: use :func:`default_uncertainty` (explicit ``None`` = point estimate).
MODEL_DEFAULT: Any = _ModelDefault()


def default_uncertainty(model: Any) -> str | None:
    """The uncertainty method a model is meant to be used with: the one its calibration was fitted
    for (the model folder records it, :func:`starlabels.inference.calibration.calibrate`); for an
    uncalibrated network ``"mc_dropout"`` when it has dropout (the BCNN), else ``"noise"`` (APOGEE
    Net §3.5); a :class:`~starlabels.models.method.LabelMethod`'s ``default_uncertainty``."""
    im = resolve(model)
    if im.method is not None:
        return getattr(im.trained, "default_uncertainty", None)
    recorded = calibration_info(im.trained).get("method")
    if recorded in uncertainty_methods.METHODS:
        return str(recorded)
    if recorded == "none":
        return None
    return "mc_dropout" if uncertainty_methods.has_active_dropout(im.physical.network) else "noise"


#: Former keywords of :func:`predict` that are now :class:`PredictOptions` fields.
MOVED_TO_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PredictOptions))


def _check_options(options: PredictOptions | None, unexpected: dict[str, Any]) -> PredictOptions:
    """``options`` (default ``PredictOptions()``); a keyword :func:`predict` does not take is a
    TypeError, which for a former keyword says where it went."""
    if unexpected:
        moved = [k for k in unexpected if k in MOVED_TO_OPTIONS]
        hint = (f" ({', '.join(moved)}: pass options=PredictOptions({', '.join(f'{k}=...' for k in moved)}))"
                if moved else "")
        raise TypeError(f"predict() got unexpected keyword argument(s) {sorted(unexpected)}{hint}")
    if options is None:
        return PredictOptions()
    if not isinstance(options, PredictOptions):
        raise TypeError(f"options must be a PredictOptions, got {type(options).__name__}")
    return options


def predict(
    model: Any,
    flux: Any,
    error: Any = None,
    *,
    uncertainty: str | None = MODEL_DEFAULT,
    n_samples: int = 100,
    bitmask: Any = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    preprocessed: bool = False,
    seed: int | None = None,
    snr: Any = None,
    wavelength: Any = None,
    grid: Any = None,
    resample: str | None = None,
    options: PredictOptions | None = None,
    **unexpected: Any,
) -> Prediction:
    """Predict labels (and uncertainties) for spectra.

    Parameters
    ----------
    model:
        A :class:`~starlabels.models.folder.TrainedModel`, a
        :class:`~starlabels.models.method.LabelMethod` (``CannonModel``, ``PayneModel``) or the
        path of a model folder. A LabelMethod computes its own labels and σ
        (``uncertainty=None`` = its ``default_uncertainty``, e.g. ``"fisher"``; ``n_samples``,
        ``batch_size`` and the options ``error_cap`` and ``coverage`` do not apply; ``error`` is
        required); the
        calibration, flags and Prediction are the same as for networks. Without a
        ``preprocessing`` it takes its own input grid (``n_pixels``) as raw input, bitmask included.
    flux, error:
        (N, P) raw flux and 1σ errors (or (P,) for one spectrum) on the model's input grid
        (``model.input_grid``; APOGEE: the apStar grid), or on the grid given by ``wavelength`` /
        ``grid``; with ``preprocessed=True``, (N, P) network input (P = the network's ``n_pixels``).
        ``error`` is required for ``"noise"``/``"delta"``; without it SNR is unknown. ``flux`` may
        instead be a :class:`~starlabels.io.Spectrum` (or a specutils spectrum) or a list of them:
        their errors, bitmasks and wavelengths are used (give no ``error``/``bitmask``/``grid``).
        Or :class:`~starlabels.inference.prepared_spectra.PreparedSpectra` from
        :func:`~starlabels.inference.prepared_spectra.prepare_spectra` for this model (checked and
        preprocessed earlier, e.g. in a reading thread; same results).
    uncertainty:
        Not given: the model's own method (:func:`default_uncertainty`: the one it was calibrated
        for; MC dropout for the BCNN, noise realisations for APOGEE Net — without ``error``, a
        method that needs errors falls back to the point estimate). Explicit
        ``None`` (point estimate; σ from the variance head if the network has one),
        ``"mc_dropout"`` (astroNN eq. 3), ``"noise"`` (APOGEE Net §3.5) or ``"delta"``
        (first-order propagation of the flux errors). See :mod:`starlabels.inference.uncertainty`.
    n_samples:
        Passes / noise realisations per spectrum (default 100).
    bitmask:
        (N, P) pixel flags of the spectra's instrument (APOGEE_PIXMASK, …; raw input only).
    batch_size:
        Rows per network forward pass (realisations count as rows).
    device:
        Torch device; default cuda when available, else cpu.
    preprocessed:
        ``flux``/``error`` are already the model's preprocessed network input.
    seed:
        Seed for dropout masks / noise realisations (reproducible for equal arguments).
    snr:
        (N,) SNR to use for the LOW_SNR flag (e.g. from file headers); default (and for NaN
        entries): median flux/error of the good pixels.
    wavelength, grid:
        The spectra's grid: a (P,) vacuum wavelength array in Å, or a :class:`~starlabels.core.Grid`
        / built-in grid name (``"apstar"``, ``"boss"``, …). Default: the model's own grid, checked
        by pixel count only.
    resample:
        ``None`` (spectra on another grid than the model's are refused, naming both grids),
        ``"linear"`` or ``"flux-conserving"``: resample them onto the model's grid
        (:func:`starlabels.preprocess.resample.resample`; errors and masks propagated, uncovered
        pixels rejected). Resampled rows carry the ``RESAMPLED`` flag.
    options:
        The less common settings (:class:`~starlabels.inference.predict_options.PredictOptions`):
        ``calibrated``, ``coverage``, ``error_cap``, the flag thresholds ``snr_min``,
        ``max_masked_fraction``, ``ood_factor``, and ``chunk_size``. Default: ``PredictOptions()``.
        (Those names were keywords of ``predict``; as keywords they are now a TypeError saying so.)

    Returns
    -------
    Prediction
        ``.mean``/``.std`` (N, L) physical units, ``.variance_parts``, ``.flags`` (N,), ``.label_names``.
    """
    options = _check_options(options, unexpected)
    im = resolve(model)
    by_default = uncertainty is MODEL_DEFAULT
    if by_default:
        uncertainty = default_uncertainty(im)
    if im.method is not None:
        if isinstance(flux, PreparedSpectra):
            raise InputDataError(f"a {im.method} model takes the spectra themselves, not PreparedSpectra")
        return predict_method(
            im, flux, error, uncertainty=uncertainty, bitmask=bitmask, device=device,
            preprocessed=preprocessed, seed=seed, snr=snr, wavelength=wavelength, grid=grid,
            resample=resample, options=options,
        )
    if uncertainty not in UNCERTAINTY_METHODS:
        raise InputDataError(f"uncertainty must be one of {UNCERTAINTY_METHODS}, got {uncertainty!r}")
    if uncertainty is not None and int(n_samples) < 1:
        raise InputDataError(f"n_samples must be >= 1, got {n_samples}")
    error_cap = options.error_cap
    if error_cap == "auto":
        already = im.preprocessing_kind == "raw" and getattr(im.preprocessing, "error_cap", None)
        error_cap = None if (already and not preprocessed) else uncertainty_methods.ERROR_CAP
    if uncertainty == "mc_dropout" and not uncertainty_methods.has_active_dropout(im.physical.network):
        raise StarlabelsError(
            "uncertainty='mc_dropout' needs a network trained with dropout (p > 0); this model has "
            "none — use uncertainty='noise' or 'delta'"
        )
    if (
        uncertainty is None
        and im.trained.network.has_variance
        and uncertainty_methods.has_active_dropout(im.physical.network)
    ):
        warnings.warn(
            "this Bayesian network was trained with Monte-Carlo dropout; its predictions with "
            "dropout off (uncertainty=None) can be much worse than the MC-dropout mean — use "
            "uncertainty='mc_dropout'",
            UserWarning,
            stacklevel=2,
        )
    if isinstance(flux, PreparedSpectra):
        _check_prepared(im, flux, error, bitmask, wavelength, grid, preprocessed, resample)
        chunks, n, has_error, resampled = (c for c in flux.chunks), flux.n, flux.has_error, flux.resampled
        n_chunks = len(flux.chunks)
    else:
        f, e, b, has_error, in_grid, resampled = grid_input.model_inputs(
            im, flux, error, bitmask, preprocessed, wavelength=wavelength, grid=grid, resample=resample
        )
        n = f.shape[0]
        n_chunks = -(-n // max(1, int(options.chunk_size)))
        # chunk k+1 is prepared in a thread while chunk k runs (no random draws there)
        chunks = iter_prepared(im, f, e, b, preprocessed, has_error, in_grid, options.chunk_size)
        if n_chunks > 1:
            chunks = prefetched(chunks, depth=1)
    if by_default and uncertainty in ("noise", "delta") and not has_error:
        uncertainty = None  # the model's own method needs errors; none were given
    if uncertainty in ("noise", "delta") and not has_error:
        raise InputDataError(f"uncertainty={uncertainty!r} needs per-pixel errors (error=...)")
    L = len(im.label_names)
    snr_given = None if snr is None else np.asarray(snr, np.float64).reshape(-1)
    if snr_given is not None and snr_given.shape[0] != n:
        raise InputDataError(f"snr has {snr_given.shape[0]} values for {n} spectra")

    dev = get_device(device)
    phys = on_device(im.physical, dev)
    method = uncertainty or "none"
    mean = np.full((n, L), np.nan)
    parts: dict[str, np.ndarray] = {}
    valid = np.zeros(n, bool)
    snr_all = np.full(n, np.nan)
    masked = np.ones(n)
    shift = np.full(n, np.nan)
    gen = uncertainty_methods.call_generator(dev, seed)  # one per call: every random draw below comes from it

    with contextlib.closing(chunks):  # an exception below stops the prefetch thread at once
        for sl, (x, xe, ok, snr_c, masked_c) in progress(chunks, desc="predict", total=n_chunks,
                                                          unit="chunk"):
            valid[sl], snr_all[sl], masked[sl] = ok, snr_c, masked_c
            if not ok.any():
                continue
            xt = torch.from_numpy(x).to(dev)
            et = torch.from_numpy(xe).to(dev) if has_error else None
            m, p = _run(phys, xt, et, method, n_samples, batch_size, gen, error_cap)
            if options.coverage and im.coverage is not None:
                p["coverage"] = im.coverage.variance(
                    embed_input(im, xt, batch_size=batch_size), snr_c[ok] if has_error else None
                )
            rows = np.arange(sl.start, sl.stop)[ok]
            if im.domain_shift is not None:
                shift[rows] = im.domain_shift.score(x, xe if has_error else None)
            mean[rows] = m
            for k, v in p.items():
                parts.setdefault(k, np.full((n, L), np.nan))[rows] = v

    if snr_given is not None:  # given values win; NaN entries fall back to the computed SNR
        snr_all = np.where(np.isfinite(snr_given), snr_given, snr_all)
    pred = finish_prediction(
        im,
        mean,
        parts,
        valid,
        snr_all,
        masked,
        uncertainty=uncertainty,
        n_samples=n_samples if uncertainty in ("mc_dropout", "noise") else 0,
        options=options,
    )
    pred.flags[resampled] |= flag_bits.bit("RESAMPLED")
    pred.domain_shift = shift
    with np.errstate(invalid="ignore"):
        pred.flags[shift > 1.0] |= flag_bits.bit("DOMAIN_SHIFT")
    return pred


def _check_prepared(im, prepared: PreparedSpectra, *given: Any) -> None:
    """Prepared spectra come alone (no error/bitmask/grid/preprocessed/resample) and for this model."""
    if any(g is not None and g is not False for g in given):
        raise InputDataError("give PreparedSpectra alone: they were checked and preprocessed by "
                             "prepare_spectra (no error=, bitmask=, wavelength=, grid=, preprocessed= "
                             "or resample=)")
    if not prepared.prepared_for(im):
        raise InputDataError("these PreparedSpectra were prepared for another model (pixel count or "
                             "preprocessing differ); prepare them with this model")


def _run(phys, x, e, method, n_samples, batch_size, gen, error_cap):
    """One chunk through the uncertainty ``method`` → (mean (n, L), {part: (n, L)}) float64."""
    if method == "none":
        m, p = uncertainty_methods.point(phys, x, batch_size=batch_size)
    elif method == "mc_dropout":
        m, p = uncertainty_methods.mc_dropout(
            phys, x, n_samples=n_samples, batch_size=batch_size, generator=gen
        )
    elif method == "noise":
        m, p = uncertainty_methods.noise_realisations(
            phys, x, e, n_samples=n_samples, batch_size=batch_size, generator=gen, error_cap=error_cap
        )
    else:
        m, p = uncertainty_methods.delta_method(
            phys, x, e, batch_size=max(1, batch_size // 4), error_cap=error_cap
        )
    return m.double().cpu().numpy(), {k: v.double().cpu().numpy() for k, v in p.items()}
