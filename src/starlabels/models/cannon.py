"""``CannonModel``: The Cannon (Ness et al. 2015; Casey et al. 2016), native in torch.

A data-driven polynomial model of continuum-normalised flux as a function of labels, with a
per-pixel intrinsic scatter, optional L1 regularisation (Casey et al. 2016, "AnniesLasso") and
optional censoring (a label may shape only its own pixels). Same definitions as the reference
implementation ``thecannon`` (PyPI ``annieslasso``; :mod:`starlabels.models.cannon_fit` lists
them); validated against it by ``bench/cannon_agreement.py``.

>>> model = CannonModel(["TEFF", "LOGG", "FE_H"]).fit(flux, error, labels)   # doctest: +SKIP
>>> pred = starlabels.predict(model, test_flux, test_error, preprocessed=True)  # doctest: +SKIP

Any grid: ``flux``/``error`` (N, P) for any P; ``error = inf`` (or NaN, or ≤ 0) marks a pixel
unused. Training is batched over pixels, the test step over spectra; float64 on the device of
choice (cuda when present). A fitted model is a :class:`~starlabels.models.method.LabelMethod`,
so ``starlabels.predict``, ``calibrate``, ``run_catalog`` and reports use it like a network; its
σ is the inverse Fisher matrix (uncertainty name ``"fisher"``), calibrated like the networks'.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.models import cannon_fit as fit_
from starlabels.models.cannon_terms import design_matrix, term_exponents, term_mask, term_names
from starlabels.models.method import LabelMethod, read_folder, write_folder

__all__ = ["DEFAULT_UNCENSORED", "CannonModel", "censors_from_windows"]

#: Labels that shape every pixel when censoring from element windows (Casey et al. 2016).
DEFAULT_UNCENSORED = ("TEFF", "LOGG", "FE_H", "M_H", "ALPHA_M", "VMICRO", "VSINI")

#: Elements of the test step's (spectra × pixels) float64 temporaries per batch (×4 of them).
TEST_BLOCK_ELEMENTS = 1 << 24


def _device(device: str | torch.device | None) -> torch.device:
    from starlabels.utils import get_device

    return get_device(None if device is None else str(device))


def _ivar(error: np.ndarray) -> np.ndarray:
    """1/σ² with 0 for unused pixels (σ inf, NaN or ≤ 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iv = 1.0 / (error * error)
    return np.where(np.isfinite(error) & (error > 0) & np.isfinite(iv), iv, 0.0)


def censors_from_windows(
    label_names: Sequence[str], windows: Any, element_names: Sequence[str] | None = None, *,
    uncensored: Sequence[str] = DEFAULT_UNCENSORED,
) -> dict[str, np.ndarray]:
    """Censoring masks from element windows: each label whose element has a window (``MG_FE`` →
    ``Mg``, matched by :func:`starlabels.models.censored.element_key`) may shape only the pixels of
    its window; labels in ``uncensored`` (and labels without a window) shape every pixel.

    ``windows``: the path of an ``.npz`` with ``windows`` (E, P) bool and ``elements`` (E,) (e.g.
    ``aspcap_element_windows_dr14_7514.npz``), or an (E, P) bool array with ``element_names``.
    Returns ``{label: (P,) bool}`` for :class:`CannonModel` ``censors``.
    """
    from starlabels.io.array_file import load_element_windows_npz
    from starlabels.models.censored_windows import element_key

    if isinstance(windows, (str, Path)):
        w, names = load_element_windows_npz(windows)
    else:
        w = np.asarray(windows, bool)
        names = list(element_names or [])
        if w.ndim != 2 or w.shape[0] != len(names):
            raise InputDataError(f"windows {w.shape} need one element name per row, got {len(names)}")
    by_key = {element_key(n): w[i] for i, n in enumerate(names)}
    keep = {str(u).upper() for u in uncensored}
    return {lab: by_key[element_key(lab)] for lab in label_names
            if lab.upper() not in keep and element_key(lab) in by_key}


def _stored_regularisation(cannon: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
    """Λ of a saved model: the (P,) tensor or the config value; folders written before the British
    spelling hold the key ``"regularization"``."""
    for key in ("regularisation", "regularization"):
        if key in tensors:
            return tensors[key].numpy()
    for key in ("regularisation", "regularization"):
        if key in cannon:
            return float(cannon[key])
    raise KeyError("regularisation")


class CannonModel(LabelMethod):
    """The Cannon: flux_p(labels) = θ_p · v((labels − offsets)/scales) + N(0, s²_p + σ²).

    Parameters
    ----------
    label_names:
        L label names (allStar columns, e.g. ``TEFF``).
    order:
        Polynomial order of the label vector (2: quadratic, the default; all cross terms).
    regularisation:
        L1 strength Λ ≥ 0 on θ_1… (Casey et al. 2016): one value, or (P,) per pixel. The older
        keyword ``regularization=`` is still accepted (DeprecationWarning).
    censors:
        Optional ``{label: (P,) bool}``: True where the label may shape the pixel (as
        ``thecannon``'s censors). Terms containing a censored label are fixed at 0 there.
    label_units:
        L units (default ``""``).
    initial_labels:
        (K, L) test-step starting points in physical units; default: the training median
        (``thecannon``'s start) plus the medians of ``n_starts − 1`` k-means clusters of the
        training labels.
    n_starts:
        Number of default starting points (≥ 1).
    preprocessing:
        ``PreprocessConfig`` turning raw apStar flux into this model's input (stored; applied by
        ``starlabels.predict`` to raw input), or None (the model's input is given directly).
    device:
        Torch device for ``fit`` and the test step (default: cuda when available, else cpu).

    Fitted attributes
    -----------------
    theta_ (P, T), s2_ (P,), offsets_ (L,), scales_ (L,), terms_ (T names), exponents_ (T, L),
    pixel_used_ (P,) bool, converged_ (P,) bool, initial_labels_ (K, L), label_range_ (2, L),
    n_train_, train_seconds_.
    """

    method = "cannon"
    default_uncertainty = "fisher"

    def __init__(
        self,
        label_names: Sequence[str],
        order: int = 2,
        regularisation: float | Sequence[float] | np.ndarray = 0.0,
        *,
        censors: Mapping[str, Any] | None = None,
        label_units: Sequence[str] | None = None,
        initial_labels: Any = None,
        n_starts: int = 5,
        preprocessing: Any = None,
        device: str | torch.device | None = None,
        regularization: float | Sequence[float] | np.ndarray | None = None,
    ) -> None:
        if regularization is not None:
            warnings.warn("CannonModel(regularization=...) is spelled regularisation= now; the old "
                          "keyword will go", DeprecationWarning, stacklevel=2)
            regularisation = regularization
        self.label_names = [str(n) for n in label_names]
        if not self.label_names or len(set(self.label_names)) != len(self.label_names):
            raise InputDataError(f"label_names must be distinct and non-empty, got {self.label_names}")
        self.order = int(order)
        if self.order < 1:
            raise InputDataError(f"order must be >= 1, got {order}")
        reg = np.asarray(regularisation, np.float64)
        if reg.ndim > 1 or not np.all(np.isfinite(reg)) or np.any(reg < 0):
            raise InputDataError("regularisation must be a finite value >= 0 or a (P,) array of them")
        self.regularisation = float(reg) if reg.ndim == 0 else reg
        self.censors = None if censors is None else {str(k): np.asarray(v, bool) for k, v in censors.items()}
        unknown = sorted(set(self.censors or {}) - set(self.label_names))
        if unknown:
            raise InputDataError(f"censors for unknown label(s) {unknown}; labels: {self.label_names}")
        n_labels = len(self.label_names)
        self.label_units = [""] * n_labels if label_units is None else [str(u) for u in label_units]
        if len(self.label_units) != len(self.label_names):
            raise InputDataError(f"{len(self.label_units)} label units for {len(self.label_names)} labels")
        self.initial_labels = (None if initial_labels is None
                               else np.atleast_2d(np.asarray(initial_labels, float)))
        self.n_starts = int(n_starts)
        if self.n_starts < 1:
            raise InputDataError(f"n_starts must be >= 1, got {n_starts}")
        self.preprocessing = preprocessing
        self.device = device
        self.calibration = None
        self.training: dict[str, Any] = {}

    # ------------------------------------------------------------------ properties
    @property
    def n_pixels(self) -> int:
        self._check_fitted()
        return int(self.theta_.shape[0])

    @property
    def n_terms(self) -> int:
        return int(term_exponents(len(self.label_names), self.order).shape[0])

    def _check_fitted(self) -> None:
        if getattr(self, "theta_", None) is None:
            raise InputDataError("this CannonModel is not fitted yet; call fit(flux, error, labels) first")

    # ------------------------------------------------------------------ training
    def _check_arrays(
        self, flux: Any, error: Any, n_pixels: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        f = np.asarray(flux)
        e = np.asarray(error)
        for name, a in (("flux", f), ("error", e)):
            numeric = np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
            if a.dtype == object or not numeric:
                raise InputDataError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        f, e = np.atleast_2d(f).astype(np.float64), np.atleast_2d(e).astype(np.float64)
        if f.ndim != 2 or f.shape != e.shape:
            raise InputDataError(f"flux {np.shape(flux)} and error {np.shape(error)} must both be (N, P)")
        if n_pixels is not None and f.shape[1] != n_pixels:
            raise InputDataError(f"spectra have {f.shape[1]} pixels; this Cannon model takes {n_pixels}")
        usable = np.isfinite(e) & (e > 0)
        if np.any(usable & ~np.isfinite(f)):
            raise InputDataError(
                "flux is non-finite at pixels with a finite error; give those pixels error = inf"
            )
        return np.where(usable, f, 0.0), e

    def fit(self, flux: Any, error: Any, labels: Any) -> CannonModel:
        """Train on N spectra: ``flux``, ``error`` (N, P) continuum-normalised, ``labels`` (N, L).

        Raises :class:`InputDataError` for shape mismatches, non-finite labels (drop such rows
        first), non-finite flux at used pixels, fewer stars than polynomial terms, or censors of
        the wrong length. Returns ``self``.
        """
        t0 = time.perf_counter()
        f, e = self._check_arrays(flux, error)
        lab = np.asarray(labels, np.float64)
        if lab.ndim == 1 and len(self.label_names) == 1:
            lab = lab[:, None]
        N, P = f.shape
        L = len(self.label_names)
        if lab.shape != (N, L):
            raise InputDataError(f"labels have shape {lab.shape}; expected ({N}, {L}) for {N} spectra")
        if not np.all(np.isfinite(lab)):
            bad = int((~np.isfinite(lab)).any(axis=1).sum())
            raise InputDataError(f"{bad} training rows have non-finite labels; The Cannon needs every label")
        T = self.n_terms
        if N < T:
            raise InputDataError(f"{N} training spectra for {T} polynomial terms; need at least {T}")
        reg = self.regularisation
        if np.ndim(reg) == 1 and np.shape(reg)[0] != P:
            raise InputDataError(f"regularisation has {np.shape(reg)[0]} values for {P} pixels")
        label_mask = np.ones((L, P), bool)
        for name, mask in (self.censors or {}).items():
            if mask.shape != (P,):
                raise InputDataError(f"censor mask of {name} has shape {mask.shape}; expected ({P},)")
            label_mask[self.label_names.index(name)] = mask

        dev = _device(self.device)
        dt = torch.float64
        # thecannon: offsets = median, scales = ptp of the 2.5/97.5 percentiles
        offsets = np.percentile(lab, 50, axis=0)
        scales = np.ptp(np.percentile(lab, [2.5, 97.5], axis=0), axis=0)
        if np.any(scales <= 0):
            flat = [n for n, s in zip(self.label_names, scales, strict=True) if s <= 0]
            raise InputDataError(f"label(s) {flat} do not vary across the training set")
        exps = term_exponents(L, self.order).to(dev)
        x = torch.as_tensor((lab - offsets) / scales, dtype=dt, device=dev)
        D = design_matrix(x, exps)
        ft = torch.as_tensor(f, dtype=dt, device=dev)
        iv = torch.as_tensor(_ivar(e), dtype=dt, device=dev)
        A, b = fit_.normal_equations(D, ft, iv)
        tmask = term_mask(torch.as_tensor(label_mask, device=dev), exps)
        theta, converged = fit_.solve_theta(A, b, tmask, torch.as_tensor(reg, dtype=dt, device=dev))
        # thecannon: a pixel with Σ ivar < N carries no information: θ = (1, 0, …), s² = inf
        used = iv.sum(dim=0) >= N
        resid2 = (ft - D @ theta.T) ** 2
        s2 = fit_.fit_scatter(resid2, iv)
        fiducial = torch.zeros(T, dtype=dt, device=dev)
        fiducial[0] = 1.0
        theta = torch.where(used[:, None], theta, fiducial)
        s2 = torch.where(used, s2, torch.full_like(s2, float("inf")))

        self.exponents_ = exps.cpu()
        self.terms_ = term_names(self.label_names, self.exponents_)
        self.theta_ = theta.cpu().numpy()
        self.s2_ = s2.cpu().numpy()
        self.offsets_, self.scales_ = offsets, scales
        self.pixel_used_ = used.cpu().numpy()
        self.converged_ = (converged | ~used).cpu().numpy()
        self.label_mask_ = label_mask
        self.initial_labels_ = (self._default_starts(lab) if self.initial_labels is None
                                else self.initial_labels)
        if self.initial_labels_.shape[1] != L:
            raise InputDataError(f"initial_labels have {self.initial_labels_.shape[1]} labels, model has {L}")
        self.label_range_ = np.stack([lab.min(axis=0), lab.max(axis=0)])
        self.n_train_ = N
        self.train_seconds_ = time.perf_counter() - t0
        self.training = {
            **self.training, "n_train": N, "train_seconds": self.train_seconds_,
            "label_range": {"min": self.label_range_[0].tolist(), "max": self.label_range_[1].tolist(),
                            "source": "training set"},
            "pixels_used": int(self.pixel_used_.sum()), "device": str(dev),
        }
        return self

    def _default_starts(self, lab: np.ndarray) -> np.ndarray:
        """The training median, then medians of k-means clusters of the scaled training labels."""
        starts = [np.median(lab, axis=0)]
        k = min(self.n_starts - 1, len(lab))
        if k > 0:
            z = (lab - self.offsets_) / self.scales_
            rng = np.random.default_rng(0)
            centres = z[rng.choice(len(z), size=k, replace=False)]
            for _ in range(25):
                which = np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
                centres = np.stack([z[which == j].mean(0) if np.any(which == j) else centres[j]
                                    for j in range(k)])
            which = np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            starts += [np.median(lab[which == j], axis=0) for j in range(k) if np.any(which == j)]
        return np.array(starts)

    # ------------------------------------------------------------------ model spectra and test step
    def __call__(self, labels: Any) -> np.ndarray:
        """Model flux (N, P) for labels (N, L) (physical units)."""
        self._check_fitted()
        x = (np.atleast_2d(np.asarray(labels, np.float64)) - self.offsets_) / self.scales_
        v = design_matrix(torch.as_tensor(x), self.exponents_).numpy()
        return v @ self.theta_.T

    def fit_labels(
        self, flux: Any, error: Any, initial_labels: Any = None, *, device: str | torch.device | None = None,
        max_iter: int = 200,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The test step: labels of N spectra (Levenberg–Marquardt from every start, best χ² kept).

        ``flux``, ``error`` (N, P); ``initial_labels`` (K, L) or (N, K, L) physical (default
        ``initial_labels_``). Returns labels (N, L), covariance (N, L, L) (inverse Fisher matrix,
        physical units²), χ² (N,) and converged (N,) bool; NaN labels for spectra without a usable
        pixel or a singular Fisher matrix.
        """
        self._check_fitted()
        f, e = self._check_arrays(flux, error, self.n_pixels)
        N, P = f.shape
        L = len(self.label_names)
        starts = self.initial_labels_ if initial_labels is None else np.asarray(initial_labels, np.float64)
        starts = np.broadcast_to(starts, (N, *starts.shape[-2:])) if starts.ndim == 2 else starts
        if starts.shape[0] != N or starts.shape[-1] != L:
            raise InputDataError(f"initial_labels shape {starts.shape} does not fit {N} spectra × {L} labels")
        dev = _device(device if device is not None else self.device)
        dt = torch.float64
        theta = torch.as_tensor(self.theta_, dtype=dt, device=dev)
        s2 = torch.as_tensor(self.s2_, dtype=dt, device=dev)
        exps = self.exponents_.to(dev)
        labels = np.full((N, L), np.nan)
        cov = np.full((N, L, L), np.nan)
        chi2 = np.full(N, np.nan)
        conv = np.zeros(N, bool)
        step = max(1, TEST_BLOCK_ELEMENTS // max(1, 4 * P))  # (spectra × pixels) temporaries
        for s in range(0, N, step):
            sl = slice(s, min(N, s + step))
            iv = torch.as_tensor(_ivar(e[sl]), dtype=dt, device=dev)
            w = fit_.adjusted_ivar(iv, s2)
            ok = (w > 0).any(dim=1)
            if not bool(ok.any()):
                continue
            x0 = torch.as_tensor((starts[sl] - self.offsets_) / self.scales_, dtype=dt, device=dev)
            ft = torch.as_tensor(f[sl], dtype=dt, device=dev)
            x, fisher, c2, cv = fit_.test_step(ft[ok], w[ok], theta, exps, x0[ok], max_iter=max_iter)
            rows = np.arange(sl.start, sl.stop)[ok.cpu().numpy()]
            inv_scale = torch.as_tensor(1.0 / self.scales_, dtype=dt, device=dev)
            fisher_phys = fisher * inv_scale[None, :, None] * inv_scale[None, None, :]
            cv_phys, info = torch.linalg.inv_ex(fisher_phys)
            good = info == 0
            cv_phys[~good] = float("nan")
            labels[rows] = (x.cpu().numpy() * self.scales_ + self.offsets_)
            cov[rows] = cv_phys.cpu().numpy()
            chi2[rows] = c2.cpu().numpy()
            conv[rows] = (cv & good).cpu().numpy()
        return labels, cov, chi2, conv

    def predict_moments(self, flux, error, bitmask=None, *, device=None, seed=None):
        """LabelMethod hook: labels (N, L) and ``{"fisher": diag of the inverse Fisher matrix}``."""
        labels, cov, _, _ = self.fit_labels(flux, error, device=device)
        var = np.diagonal(cov, axis1=1, axis2=2).copy()
        var[~(var > 0)] = np.nan
        return labels, {"fisher": var}

    @property
    def regularization(self) -> float | np.ndarray:
        """Deprecated spelling of :attr:`regularisation` (DeprecationWarning)."""
        warnings.warn("CannonModel.regularization is spelled regularisation now", DeprecationWarning,
                      stacklevel=2)
        return self.regularisation

    # ------------------------------------------------------------------ folder
    def save(self, folder: str | Path) -> Path:
        """Write the model folder (config.json with ``"method": "cannon"``, weights.safetensors)."""
        self._check_fitted()
        cfg = self.base_config()
        cfg["architecture"] = {"name": "cannon", "kwargs": {"order": self.order, "n_starts": self.n_starts}}
        cfg["cannon"] = {
            "order": self.order, "terms": self.terms_, "n_pixels": self.n_pixels,
            "regularisation": self.regularisation if np.ndim(self.regularisation) == 0 else "per-pixel",
            "censored_labels": sorted(self.censors or {}),
        }
        # the label offsets/scales, where a network keeps its label scaler (read by reports)
        cfg["normalisation"] = {"labels": {"mean": self.offsets_.tolist(), "std": self.scales_.tolist(),
                                           "names": self.label_names}}
        t = {
            "theta": torch.as_tensor(self.theta_), "s2": torch.as_tensor(self.s2_),
            "offsets": torch.as_tensor(self.offsets_), "scales": torch.as_tensor(self.scales_),
            "exponents": self.exponents_.clone(), "initial_labels": torch.as_tensor(self.initial_labels_),
            "label_mask": torch.as_tensor(self.label_mask_), "pixel_used": torch.as_tensor(self.pixel_used_),
            "converged": torch.as_tensor(self.converged_), "label_range": torch.as_tensor(self.label_range_),
        }
        if np.ndim(self.regularisation) == 1:
            t["regularisation"] = torch.as_tensor(self.regularisation)
        return write_folder(folder, cfg, t)

    @classmethod
    def load(cls, folder: str | Path) -> CannonModel:
        """Restore a model written by :meth:`save` (``ModelFormatError`` naming the folder when bad)."""
        cfg, t, _ = read_folder(folder, "cannon")
        try:
            c = cfg["cannon"]
            names = cfg["labels"]["names"]
            reg = _stored_regularisation(c, t)
            label_mask = t["label_mask"].numpy().astype(bool)
            model = cls(names, order=int(c["order"]), regularisation=reg,
                        label_units=cfg["labels"].get("units"),
                        censors={n: label_mask[i] for i, n in enumerate(names)
                                 if n in c.get("censored_labels", [])},
                        n_starts=int(cfg["architecture"]["kwargs"].get("n_starts", 5)))
            model.theta_ = t["theta"].numpy().astype(np.float64)
            model.s2_ = t["s2"].numpy().astype(np.float64)
            model.offsets_ = t["offsets"].numpy().astype(np.float64)
            model.scales_ = t["scales"].numpy().astype(np.float64)
            model.exponents_ = t["exponents"].to(torch.int64)
            model.initial_labels_ = t["initial_labels"].numpy().astype(np.float64)
            model.label_mask_ = label_mask
            model.pixel_used_ = t["pixel_used"].numpy().astype(bool)
            model.converged_ = t["converged"].numpy().astype(bool)
            model.label_range_ = t["label_range"].numpy().astype(np.float64)
        except (KeyError, TypeError, ValueError, InputDataError) as exc:
            raise ModelFormatError(f"{folder}: inconsistent Cannon model: {exc!r}") from None
        T, L = model.exponents_.shape
        P = model.theta_.shape[0]
        if model.theta_.shape != (P, T) or len(names) != L or model.s2_.shape != (P,):
            raise ModelFormatError(f"{folder}: Cannon weights have inconsistent shapes")
        if not torch.equal(model.exponents_, term_exponents(L, model.order)):
            raise ModelFormatError(f"{folder}: stored polynomial terms do not match order {model.order}")
        model.terms_ = term_names(names, model.exponents_)
        model.n_train_ = cfg.get("training", {}).get("n_train")
        model.restore_base(cfg, Path(folder))
        return model
