"""``starlabels.predict``: labels, uncertainties and quality flags for arrays of spectra.

The trained model's own preprocessing (``PreprocessConfig``), spectrum scaler and label scaler are
applied automatically, so the input is raw flux on the model's input grid (APOGEE models: the apStar
grid, as read from apStar files) — or, with ``preprocessed=True``, flux already on the network's input
grid. Spectra on another grid are given with their grid (``wavelength=``/``grid=``, or as
:class:`~starlabels.io.Spectrum` objects from :func:`starlabels.io.read_spectra`) and are resampled
onto the model's grid when ``resample`` asks for it, else refused naming both grids
(:mod:`starlabels.inference.grid_input`). Spectra are processed in chunks of ``chunk_size`` rows
(preprocessing + network), so memory stays bounded for any N.

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

import copy
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from starlabels.errors import InputDataError, ModelFormatError, StarlabelsError
from starlabels.inference import flags as flag_bits
from starlabels.inference import grid_input
from starlabels.inference import uncertainty as uncertainty_methods
from starlabels.utils import get_device, progress

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
    from starlabels.inference.calibration import calibration_info

    im = resolve(model)
    if im.method is not None:
        return getattr(im.trained, "default_uncertainty", None)
    recorded = calibration_info(im.trained).get("method")
    if recorded in uncertainty_methods.METHODS:
        return str(recorded)
    if recorded == "none":
        return None
    return "mc_dropout" if uncertainty_methods.has_active_dropout(im.physical.network) else "noise"

#: Spectra preprocessed and sent to the device per step (bounded memory for any N).
CHUNK_SIZE = 256


@dataclass
class Prediction:
    """Labels of N spectra.

    Attributes
    ----------
    mean, std:
        (N, L) float64, physical units (``label_units``); ``std`` is the total uncertainty,
        calibrated when the model carries a calibration for this method (and ``calibrated``).
        NaN for invalid spectra (see ``flags``) and, for ``std``, when no uncertainty was computed.
    label_names, label_units:
        L names (allStar columns, e.g. ``TEFF``) and units.
    variance_parts:
        Named (N, L) *variance* components (physical units²), e.g. ``"epistemic"``,
        ``"aleatoric"``, ``"noise"``, ``"delta"``; scaled by the calibration factor² like ``std``,
        so ``std**2 == sum(variance_parts.values())``. :meth:`sigma_parts` gives them as σ.
    flags:
        (N,) int32 bitmask, bits in :mod:`starlabels.inference.flags`.
    snr:
        (N,) signal-to-noise used for the LOW_SNR flag (NaN when unknown).
    masked_fraction:
        (N,) fraction of rejected pixels.
    uncertainty, n_samples, calibrated:
        How the uncertainties were made; ``calibrated`` is True when scale factors were applied.
    scales:
        (L,) calibration factors applied to ``std`` (ones when uncalibrated).
    domain_shift:
        (N,) input-space domain-shift score (:mod:`starlabels.inference.domain_shift`): larger =
        less like the training spectra; > 1 sets the ``DOMAIN_SHIFT`` flag. NaN when the model
        has no fitted estimator or the spectrum is invalid.
    """

    mean: np.ndarray
    std: np.ndarray
    label_names: list[str]
    label_units: list[str] = field(default_factory=list)
    variance_parts: dict[str, np.ndarray] = field(default_factory=dict)
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    snr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    masked_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0))
    uncertainty: str | None = None
    n_samples: int = 0
    calibrated: bool = False
    scales: np.ndarray | None = None
    domain_shift: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def sigma_parts(self) -> dict[str, np.ndarray]:
        """The variance parts as standard deviations (σ, label units): ``{"epistemic": (N, L), ...}``."""
        return {k: np.sqrt(v) for k, v in self.variance_parts.items()}

    def label(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` (N,) of one label by name."""
        try:
            k = self.label_names.index(name)
        except ValueError:
            raise KeyError(f"no label {name!r}; labels: {self.label_names}") from None
        return self.mean[:, k], self.std[:, k]


# ----------------------------------------------------------------------------------------------
# The model as inference needs it


@dataclass
class InferenceModel:
    """What inference needs from a :class:`~starlabels.models.folder.TrainedModel`, resolved once.

    ``physical`` is the :class:`~starlabels.inference.uncertainty.PhysicalNetwork` (scalers folded
    in) around the inference copy of the network (:func:`inference_network`); ``folder`` the model
    folder when it was loaded from one.
    """

    trained: Any
    physical: uncertainty_methods.PhysicalNetwork
    label_names: list[str]
    label_units: list[str]
    preprocessing: Any
    n_pixels: int
    label_range: tuple[np.ndarray, np.ndarray] | None
    name: str
    version: str
    folder: Path | None = None
    coverage: Any = None
    #: fitted :class:`~starlabels.inference.domain_shift.DomainShift`, or None
    domain_shift: Any = None
    #: ``None`` for a network; the :class:`~starlabels.models.method.LabelMethod`'s ``method``
    #: (``"cannon"``, ``"payne"``) otherwise (``physical`` is then None).
    method: str | None = None

    @property
    def calibration(self) -> dict:
        """The calibration metadata (see :mod:`starlabels.inference.calibration`)."""
        from starlabels.inference.calibration import calibration_info

        return calibration_info(self.trained)

    @property
    def has_variance(self) -> bool:
        return bool(getattr(getattr(self.trained, "network", None), "has_variance", False))

    @property
    def preprocessing_kind(self) -> str | None:
        return None if self.preprocessing is None else str(self.preprocessing.kind)


def load(model: Any) -> Any:
    """A ``TrainedModel`` (or :class:`~starlabels.models.method.LabelMethod`) from one, an
    :class:`InferenceModel` or a model folder path."""
    from starlabels.models.method import LabelMethod

    if isinstance(model, InferenceModel):
        return model.trained
    if isinstance(model, (str, os.PathLike)):
        from starlabels.models.folder import load_model

        return load_model(Path(model), device="cpu")
    if not (hasattr(model, "network") or isinstance(model, LabelMethod)):
        raise TypeError(
            f"model must be a TrainedModel, a LabelMethod (CannonModel, PayneModel) or a model folder "
            f"path, got {type(model).__name__}"
        )
    return model


def _affine(fn, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, slope), each (n,), of a per-element affine map ``fn`` on (1, n) arrays."""
    zero = np.asarray(fn(np.zeros((1, n), np.float64)), np.float64).reshape(-1)
    one = np.asarray(fn(np.ones((1, n), np.float64)), np.float64).reshape(-1)
    two = np.asarray(fn(np.full((1, n), 2.0)), np.float64).reshape(-1)
    slope = one - zero
    if not (np.all(np.isfinite(slope)) and np.allclose(two, zero + 2 * slope, rtol=1e-5, atol=1e-8)):
        raise ModelFormatError(f"the model's {what} is not a per-element affine map; cannot fold it in")
    return zero, slope


def resolve(model: Any) -> InferenceModel:
    """Load (if needed) and unpack a model for inference. An :class:`InferenceModel` is returned
    as is; anything else is resolved afresh (cheap: one copy of the weights for the fast path)."""
    if isinstance(model, InferenceModel):
        return model
    from starlabels.models.method import LabelMethod

    folder = Path(model).resolve() if isinstance(model, (str, os.PathLike)) else None
    tm = load(model)
    folder = folder or getattr(tm, "source_folder", None)
    if isinstance(tm, LabelMethod):
        from starlabels.inference.method_predict import resolve_method

        return resolve_method(tm, folder)
    net = tm.network
    n_pixels = int(net.n_pixels)
    n_labels = int(net.n_labels)
    names = list(tm.label_names)
    if len(names) != n_labels:
        raise ModelFormatError(f"model has {len(names)} label names but the network has {n_labels} outputs")
    units = list(getattr(tm, "label_units", None) or [""] * n_labels)
    ls, ss = tm.label_scaler, tm.spectrum_scaler
    out_offset, out_slope = _affine(ls.inverse_transform, n_labels, "label scaler")
    in_offset, in_slope = (np.zeros(n_pixels), np.ones(n_pixels)) if ss is None else _affine(
        ss.transform, n_pixels, "spectrum scaler"
    )
    physical = uncertainty_methods.PhysicalNetwork(
        inference_network(net), torch.from_numpy(in_offset), torch.from_numpy(in_slope),
        torch.from_numpy(out_offset), torch.from_numpy(out_slope),
    )
    preprocessing = tm.preprocess_config() if hasattr(tm, "preprocess_config") else None
    if preprocessing is not None and int(preprocessing.n_pixels) != n_pixels:
        raise ModelFormatError(
            f"the model's preprocessing gives {preprocessing.n_pixels} pixels but its network "
            f"takes {n_pixels}"
        )
    cov = getattr(tm, "coverage", None)
    if cov is None and folder is not None:
        from starlabels.inference.coverage import load_coverage

        cov = load_coverage(folder, net, names)
        tm.coverage = cov
    shift = getattr(tm, "domain_shift", None)
    if shift is None and folder is not None:
        from starlabels.inference.domain_shift import load_domain_shift

        shift = load_domain_shift(folder, net)
        tm.domain_shift = shift
    return InferenceModel(
        trained=tm, physical=physical, label_names=names, label_units=units,
        preprocessing=preprocessing, n_pixels=n_pixels, label_range=_label_range(tm, n_labels),
        name=folder.name if folder is not None else str(getattr(tm, "architecture", type(net).__name__)),
        version=_model_version(tm), folder=folder, coverage=cov, domain_shift=shift,
    )


#: Fallback training range when the model records none: label-scaler mean ± this many std.
RANGE_SIGMA = 4.0


def _label_range(tm: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Training label range (lo, hi), each (L,): ``training["label_range"]`` (provenance) if the
    trainer stored it, else the calibration's dev-set range, else label-scaler mean ± 4 std."""
    from starlabels.inference.calibration import calibration_info

    for rng in ((getattr(tm, "training", None) or {}).get("label_range"),
                calibration_info(tm).get("label_range")):
        if isinstance(rng, dict) and "min" in rng and "max" in rng:
            lo = np.asarray(rng["min"], np.float64).reshape(-1)
            hi = np.asarray(rng["max"], np.float64).reshape(-1)
            if lo.shape == hi.shape == (n_labels,):
                return lo, hi
    ls = getattr(tm, "label_scaler", None)
    if getattr(ls, "mean", None) is not None and getattr(ls, "std", None) is not None:
        m, s = np.asarray(ls.mean, np.float64), np.asarray(ls.std, np.float64)
        return m - RANGE_SIGMA * s, m + RANGE_SIGMA * s
    return None


def _model_version(tm: Any) -> str:
    """``<starlabels version>:<created>`` of the model (identifies one training run)."""
    v = getattr(tm, "starlabels_version", None)
    c = getattr(tm, "created", None)
    if v or c:
        return f"{v or '?'}:{c or '?'}"
    from starlabels import __version__

    return __version__


# ----------------------------------------------------------------------------------------------
# fast inference graph and allocator


def inference_network(net: nn.Module) -> nn.Module:
    """A copy of ``net`` rewritten for faster inference, numerically identical:

    - inside every ``nn.Sequential``, ``ReLU → MaxPool1d`` becomes ``MaxPool1d → ReLU`` (ReLU is
      monotone, so max and ReLU commute exactly) — the ReLU then touches half the values;
    - ReLUs that follow a module producing a fresh tensor inside a ``Sequential`` run in place (no
      new activation buffer);
    - plain ``Conv1d`` layers become :class:`~starlabels.inference.uncertainty.FastGradConv1d`
      (same forward; a faster input gradient for the delta method, ~10 % on APOGEE Net);
    - plain ``nn.Dropout`` layers become :class:`~starlabels.inference.uncertainty.GeneratorDropout`
      (identical in eval mode; in MC dropout it draws masks from the call's own generator, never
      from torch's global RNG);
    - its parameters do not require gradients (it is never trained; the delta method then computes
      input gradients only).

    The copy is checked against ``net`` on a random probe in eval mode; if it differs (an
    architecture this rewrite does not understand) ``net`` itself is returned. Weights are copied,
    so later changes to ``net`` need a new :func:`resolve`.
    """
    fast = copy.deepcopy(net)
    changed = False
    for mod in list(fast.modules()):
        if isinstance(mod, nn.Sequential):
            changed |= _rewrite_sequential(mod)
        for name, child in list(mod.named_children()):
            if uncertainty_methods.FastGradConv1d.supports(child):
                setattr(mod, name, uncertainty_methods.FastGradConv1d.from_conv(child))
                changed = True
    if any(type(m) is nn.Dropout for m in fast.modules()):
        # MC dropout then draws from each call's own generator
        uncertainty_methods.use_generator_dropout(fast)
        changed = True
    if not changed:
        return net
    for p in fast.parameters():
        p.requires_grad_(False)
    n_pixels = int(getattr(net, "n_pixels", 0))
    if n_pixels <= 0:
        return net
    probe = torch.randn(3, 1, n_pixels, generator=torch.Generator().manual_seed(0))
    dev = next(iter(net.parameters()), probe).device
    was = net.training
    net.eval()
    fast.eval()
    try:
        with torch.inference_mode():
            a, b = net(probe.to(dev)), fast(probe.to(dev))
    finally:
        net.train(was)
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    same = all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(a, b, strict=True)
    )
    return fast if same else net


#: Modules whose output is a new tensor (safe to overwrite in place inside a Sequential).
_FRESH = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d, nn.BatchNorm1d, nn.ConstantPad1d)
#: Modules that pass their input through (or a view / a fresh copy of it).
_PASS = (nn.Dropout, nn.Flatten, nn.Identity)


def _fresh_input(out: list[nn.Module]) -> bool:
    """True when the tensor entering the next module of ``out`` was created inside the Sequential
    (the last module, skipping pass-through ones, creates a new tensor) — no one else holds it."""
    for m in reversed(out):
        if isinstance(m, _FRESH):
            return True
        if not isinstance(m, _PASS):
            return False
    return False


def _rewrite_sequential(seq: nn.Sequential) -> bool:
    mods = list(seq)
    out: list[nn.Module] = []
    changed = False
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.ReLU) and isinstance(nxt, nn.MaxPool1d) and _fresh_input(out):
            out += [nxt, nn.ReLU(inplace=True)]
            changed = True
            i += 2
            continue
        if isinstance(m, nn.ReLU) and not m.inplace and _fresh_input(out):
            out.append(nn.ReLU(inplace=True))
            changed = True
        else:
            out.append(m)
        i += 1
    if changed:
        for k in list(seq._modules):
            del seq._modules[k]
        for k, m in enumerate(out):
            seq.add_module(str(k), m)
    return changed


# ----------------------------------------------------------------------------------------------
# predict


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
    calibrated: bool = True,
    seed: int | None = None,
    snr: Any = None,
    error_cap: float | str | None = "auto",
    snr_min: float = flag_bits.SNR_MIN,
    max_masked_fraction: float = flag_bits.MAX_MASKED_FRACTION,
    ood_factor: float = flag_bits.OOD_FACTOR,
    chunk_size: int = CHUNK_SIZE,
    coverage: bool = True,
    wavelength: Any = None,
    grid: Any = None,
    resample: str | None = None,
) -> Prediction:
    """Predict labels (and uncertainties) for spectra.

    Parameters
    ----------
    model:
        A :class:`~starlabels.models.folder.TrainedModel`, a
        :class:`~starlabels.models.method.LabelMethod` (``CannonModel``, ``PayneModel``) or the
        path of a model folder. A LabelMethod computes its own labels and σ
        (``uncertainty=None`` = its ``default_uncertainty``, e.g. ``"fisher"``; ``n_samples``,
        ``batch_size``, ``error_cap`` and ``coverage`` do not apply; ``error`` is required); the
        calibration, flags and Prediction are the same as for networks. Without a
        ``preprocessing`` it takes its own input grid (``n_pixels``) as raw input, bitmask included.
    flux, error:
        (N, P) raw flux and 1σ errors (or (P,) for one spectrum) on the model's input grid
        (``model.input_grid``; APOGEE: the apStar grid), or on the grid given by ``wavelength`` /
        ``grid``; with ``preprocessed=True``, (N, P) network input (P = the network's ``n_pixels``).
        ``error`` is required for ``"noise"``/``"delta"``; without it SNR is unknown. ``flux`` may
        instead be a :class:`~starlabels.io.Spectrum` (or a specutils spectrum) or a list of them:
        their errors, bitmasks and wavelengths are used (give no ``error``/``bitmask``/``grid``).
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
    calibrated:
        Apply the model's calibration factors for this method (default); flag UNCALIBRATED if none.
    seed:
        Seed for dropout masks / noise realisations (reproducible for equal arguments).
    snr:
        (N,) SNR to use for the LOW_SNR flag (e.g. from file headers); default (and for NaN
        entries): median flux/error of the good pixels.
    error_cap:
        Noise/delta errors are capped at this × the spectrum's mean error (None: no cap).
        ``"auto"``: 5 (APOGEE Net §3.5), or no second cap when the model's raw-flux preprocessing
        already capped the errors.
    snr_min, max_masked_fraction, ood_factor:
        Flag thresholds (see :mod:`starlabels.inference.flags`).
    chunk_size:
        Spectra preprocessed per step.
    coverage:
        Add the label-coverage variance part ``"coverage"`` when the model has one fitted
        (:func:`starlabels.inference.coverage.fit_coverage`; with any ``uncertainty``).
    wavelength, grid:
        The spectra's grid: a (P,) vacuum wavelength array in Å, or a :class:`~starlabels.core.Grid`
        / built-in grid name (``"apstar"``, ``"boss"``, …). Default: the model's own grid, checked
        by pixel count only.
    resample:
        ``None`` (spectra on another grid than the model's are refused, naming both grids),
        ``"linear"`` or ``"flux-conserving"``: resample them onto the model's grid
        (:func:`starlabels.preprocess.resample.resample`; errors and masks propagated, uncovered
        pixels rejected). Resampled rows carry the ``RESAMPLED`` flag.

    Returns
    -------
    Prediction
        ``.mean``/``.std`` (N, L) physical units, ``.variance_parts``, ``.flags`` (N,), ``.label_names``.
    """
    im = resolve(model)
    by_default = uncertainty is MODEL_DEFAULT
    if by_default:
        uncertainty = default_uncertainty(im)
    if im.method is not None:
        from starlabels.inference.method_predict import predict_method

        return predict_method(
            im,
            flux,
            error,
            uncertainty=uncertainty,
            bitmask=bitmask,
            device=device,
            preprocessed=preprocessed,
            calibrated=calibrated,
            seed=seed,
            snr=snr,
            snr_min=snr_min,
            max_masked_fraction=max_masked_fraction,
            ood_factor=ood_factor,
            chunk_size=chunk_size,
            wavelength=wavelength,
            grid=grid,
            resample=resample,
        )
    if uncertainty not in UNCERTAINTY_METHODS:
        raise InputDataError(f"uncertainty must be one of {UNCERTAINTY_METHODS}, got {uncertainty!r}")
    if uncertainty is not None and int(n_samples) < 1:
        raise InputDataError(f"n_samples must be >= 1, got {n_samples}")
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
    f, e, b, has_error, in_grid, resampled = grid_input.model_inputs(
        im, flux, error, bitmask, preprocessed, wavelength=wavelength, grid=grid, resample=resample
    )
    if by_default and uncertainty in ("noise", "delta") and not has_error:
        uncertainty = None  # the model's own method needs errors; none were given
    if uncertainty in ("noise", "delta") and not has_error:
        raise InputDataError(f"uncertainty={uncertainty!r} needs per-pixel errors (error=...)")
    n, L = f.shape[0], len(im.label_names)
    snr_given = None if snr is None else np.asarray(snr, np.float64).reshape(-1)
    if snr_given is not None and snr_given.shape[0] != n:
        raise InputDataError(f"snr has {snr_given.shape[0]} values for {n} spectra")

    dev = get_device(device)
    phys = im.physical.to(dev)
    method = uncertainty or "none"
    mean = np.full((n, L), np.nan)
    parts: dict[str, np.ndarray] = {}
    valid = np.zeros(n, bool)
    snr_all = np.full(n, np.nan)
    masked = np.ones(n)
    shift = np.full(n, np.nan)
    gen = uncertainty_methods.call_generator(dev, seed)  # one per call: every random draw below comes from it

    steps = range(0, n, max(1, int(chunk_size)))
    for start in progress(steps, desc="predict", total=len(steps), unit="chunk"):
        sl = slice(start, min(n, start + int(chunk_size)))
        x, xe, ok, snr_c, masked_c = _prepare(
            im, f[sl], e[sl], None if b is None else b[sl], preprocessed, has_error, in_grid
        )
        valid[sl], snr_all[sl], masked[sl] = ok, snr_c, masked_c
        if not ok.any():
            continue
        xt = torch.from_numpy(x).to(dev)
        et = torch.from_numpy(xe).to(dev) if has_error else None
        m, p = _run(phys, xt, et, method, n_samples, batch_size, gen, error_cap)
        if coverage and im.coverage is not None:
            from starlabels.inference.coverage import embed_input

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
    pred = _finish(
        im,
        mean,
        parts,
        valid,
        snr_all,
        masked,
        uncertainty=uncertainty,
        n_samples=n_samples if uncertainty in ("mc_dropout", "noise") else 0,
        calibrated=calibrated,
        snr_min=snr_min,
        max_masked_fraction=max_masked_fraction,
        ood_factor=ood_factor,
    )
    pred.flags[resampled] |= flag_bits.bit("RESAMPLED")
    pred.domain_shift = shift
    with np.errstate(invalid="ignore"):
        pred.flags[shift > 1.0] |= flag_bits.bit("DOMAIN_SHIFT")
    return pred


def _reject_bits(im: InferenceModel):
    bits = getattr(im.preprocessing, "reject_bits", None)
    return None if bits is None else list(bits)


def _prepare(im: InferenceModel, f, e, b, preprocessed: bool, has_error: bool, grid=None):
    """Preprocess one chunk (``grid``: the spectra's grid when known, checked by the preprocessing).
    Returns (x, xe) float32 (n_ok, P) for the valid rows, ``ok`` (n,) bool, snr (n,), masked
    fraction (n,)."""
    from starlabels.preprocess.masking import rejected_pixels

    # keep float32 input float32 (as read from files): float64 copies of a chunk and the
    # preprocessing temporaries would double the memory of a streaming run
    f = np.asarray(f) if np.issubdtype(np.asarray(f).dtype, np.floating) else np.asarray(f, np.float64)
    e = np.asarray(e) if np.issubdtype(np.asarray(e).dtype, np.floating) else np.asarray(e, np.float64)
    if preprocessed:
        rej = rejected_pixels(f, e)
    else:
        rej = rejected_pixels(
            f, e, b, bits=_reject_bits(im), bitmask_def=getattr(im.preprocessing, "bitmask", None)
        )
    ok = ~rej.all(axis=1)
    masked = rej.mean(axis=1)
    snr = np.full(f.shape[0], np.nan)
    if has_error and ok.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = f / e
        ratio[rej] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of invalid spectra
            snr = np.nanmedian(ratio, axis=1).astype(np.float64)
        del ratio
    P = im.n_pixels
    if not ok.any():
        return np.zeros((0, P), np.float32), np.zeros((0, P), np.float32), ok, snr, masked
    if preprocessed:
        x, xe = f[ok], e[ok]
    else:
        if im.preprocessing is None:
            raise ModelFormatError("the model has no preprocessing config; pass preprocessed=True input")
        x, xe = _per_star_preprocessing(im.preprocessing).apply(
            f[ok], e[ok], None if b is None else b[ok], grid=grid
        )
        x, xe = np.asarray(x), np.asarray(xe)
        if x.shape[1] != P:
            raise ModelFormatError(
                f"the model's preprocessing gives {x.shape[1]} pixels but its network takes {P}"
            )
    if not preprocessed:  # segments rejected in preprocessing (a dead detector) count as masked
        bad_out = ~(np.asarray(xe) < uncertainty_methods.BAD_ERROR)
        idx = np.flatnonzero(ok)
        masked[idx] = np.maximum(masked[idx], bad_out.mean(axis=1))
    finite = np.isfinite(x).all(axis=1)
    if not preprocessed:  # nothing usable left after preprocessing: invalid, not a guess
        finite &= ~bad_out.all(axis=1)
    if not finite.all():  # never feed NaN/inf to the network: flag the row invalid instead
        idx = np.flatnonzero(ok)
        ok[idx[~finite]] = False
        x, xe = x[finite], xe[finite]
    xe = np.where(np.isfinite(xe), xe, np.inf)
    return (
        np.ascontiguousarray(x, np.float32),
        np.ascontiguousarray(np.minimum(xe, 3e38), np.float32),
        ok,
        snr,
        masked,
    )


def _per_star_preprocessing(cfg: Any) -> Any:
    """``cfg`` with ``on_failure="reject"``: inference never raises for one star's impossible
    continuum fit (a dead detector); that segment is rejected (flux 1, huge error), which counts
    in the masked fraction (flag MANY_MASKED_PIXELS), and a spectrum with no usable segment left
    becomes invalid. Models store ``"raise"`` (right for training data); a shallow copy, the
    model's config is left as it is."""
    if getattr(cfg, "on_failure", "reject") == "reject":
        return cfg
    lenient = copy.copy(cfg)
    lenient.on_failure = "reject"
    return lenient


def _run(phys, x, e, method, n_samples, batch_size, gen, error_cap):
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


def calibration_entry(im: InferenceModel, method: str) -> dict | None:
    """The model's calibration for ``method`` (``"none"`` for point estimates), or None."""
    from starlabels.inference.calibration import method_entry

    return method_entry(im.trained, method)


def _finish(
    im: InferenceModel,
    mean,
    parts,
    valid,
    snr,
    masked,
    *,
    uncertainty,
    n_samples,
    calibrated,
    snr_min,
    max_masked_fraction,
    ood_factor,
) -> Prediction:
    n, L = mean.shape
    method = uncertainty or "none"
    flags = flag_bits.spectrum_flags(
        valid, snr, masked, snr_min=snr_min, max_masked_fraction=max_masked_fraction
    )
    # non-finite network output for a valid spectrum: NaN it and flag it
    bad_out = valid[:, None] & ~np.isfinite(mean)
    for v in parts.values():
        bad_out |= valid[:, None] & ~np.isfinite(v)
    if bad_out.any():
        flags[bad_out.any(axis=1)] |= flag_bits.bit("NONFINITE_OUTPUT")
        mean[bad_out] = np.nan
        for v in parts.values():
            v[bad_out] = np.nan
    total = uncertainty_methods.total_variance(parts)
    scales = np.ones(L)
    entry = calibration_entry(im, method)
    applied = False
    if total is None:
        std = np.full((n, L), np.nan)
        flags[valid] |= flag_bits.bit("NO_UNCERTAINTY")
    else:
        if calibrated and entry is not None:
            from starlabels.inference.calibration import apply_calibration

            parts, scales = apply_calibration(parts, list(im.label_names), entry)
            applied = True
            total = uncertainty_methods.total_variance(parts)
        else:
            flags[valid] |= flag_bits.bit("UNCALIBRATED")
        std = np.sqrt(total)
    ref = None
    if applied and entry.get("sigma_reference"):  # type: ignore[union-attr]
        ref = np.array([float(entry["sigma_reference"].get(k, np.nan)) for k in im.label_names])
    flags |= flag_bits.label_flags(
        mean, std, sigma_reference=ref, ood_factor=ood_factor, label_range=im.label_range
    )
    mean[~valid] = np.nan
    std[~valid] = np.nan
    return Prediction(
        mean=mean,
        std=std,
        label_names=list(im.label_names),
        label_units=list(im.label_units),
        variance_parts=parts,
        flags=flags.astype(np.int32),
        snr=np.asarray(snr, np.float64),
        masked_fraction=masked,
        uncertainty=uncertainty,
        n_samples=n_samples,
        calibrated=applied,
        scales=scales,
    )
