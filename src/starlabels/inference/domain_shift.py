"""Domain shift: how unlike the training spectra a spectrum is, measured in input space.

A network answers every spectrum it is given. The label-coverage term
(:mod:`starlabels.inference.coverage`) and MC-dropout σ only see what the network's embedding
sees, and a spectrum from another physics (a real star for a model trained on the built-in
generator; the generator's spectra for a model trained on a Payne emulator) can land inside the
covered region of the embedding while its labels are 3–15 σ off. This module scores the
*input* itself.

Two estimators, both fitted on the training spectra and thresholded on the dev set
(``method``):

- ``"pca"`` (default): the residual of a rank-``n_components`` PCA reconstruction of the
  normalised network input (the preprocessed flux, before the spectrum scaler). Per pixel, the
  residual r_p is divided by sqrt(σ_p² + s_p²), with σ_p the pixel's normalised flux error (masked
  pixels — error ≥ ``uncertainty.BAD_ERROR`` or not finite — are left out) and s_p the RMS
  reconstruction residual of pixel p over the training spectra (what the low-rank model cannot
  represent in-domain); z_p² is capped at ``z2_cap`` (one cosmic ray is not a domain shift),
  and the raw score is the mean of z_p² over the usable pixels — a reduced χ² of the
  reconstruction.
- ``"knn"``: the mean Euclidean distance from a spectrum's feature vector (the network's
  embedding, :func:`starlabels.inference.coverage.embed_input`) to its ``k`` nearest training
  feature vectors.

The raw score of the dev spectra sets the threshold: its ``percentile``-th percentile (default
99, so ~1 % of dev stars are flagged; the issue asks for ≤ 2 %). The reported score is the raw
score divided by that threshold: ``domain_shift > 1`` raises the ``DOMAIN_SHIFT`` flag
(:mod:`starlabels.inference.flags`). ``bench/domain_shift.py`` measures both methods.

Stored in the model folder as ``domain_shift.safetensors`` (arrays of :meth:`DomainShift.to_dict`
plus JSON metadata with a fingerprint of the network weights: a file left beside retrained
weights is ignored with a warning). Training fits it with the label coverage
(:func:`starlabels.inference.trust.fit_trust`). This module runs no predictions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.inference.label_coverage import fingerprint
from starlabels.inference.uncertainty import BAD_ERROR

__all__ = ["DOMAIN_SHIFT_FILE", "DomainShift", "load_domain_shift", "randomized_right_singular_vectors"]

DOMAIN_SHIFT_FILE = "domain_shift.safetensors"
METHODS = ("pca", "knn")


def randomized_right_singular_vectors(
    a: torch.Tensor, q: int, *, niter: int, generator: torch.Generator
) -> torch.Tensor:
    """(n, q) approximate leading right singular vectors of ``a`` (m, n), in order: the randomised
    range finder with ``niter`` subspace iterations of Halko, Martinsson & Tropp (2011, Alg. 4.4
    and 5.1), step for step as :func:`torch.svd_lowrank`, but drawing its Gaussian test matrix
    from ``generator`` instead of torch's global generator (which it leaves alone). With a CPU
    generator seeded ``s`` the result equals ``svd_lowrank`` after ``torch.manual_seed(s)``."""
    tall = a.shape[0] >= a.shape[1]
    m = a if tall else a.mH  # the range is found for the taller orientation, as svd_lowrank does
    test = torch.randn(m.shape[-1], q, dtype=m.dtype, device=m.device, generator=generator)
    basis = torch.linalg.qr(m @ test).Q
    for _ in range(niter):
        basis = torch.linalg.qr(m.mH @ basis).Q
        basis = torch.linalg.qr(m @ basis).Q
    u, _, vh = torch.linalg.svd(basis.mH @ m, full_matrices=False)
    return vh.mH if tall else basis @ u


class DomainShift:
    """Input-space domain-shift estimator (see the module docstring).

    Parameters
    ----------
    method:
        ``"pca"`` (reconstruction residual of normalised spectra) or ``"knn"`` (distance in a
        feature space, e.g. the network's embedding).
    n_components:
        PCA rank (``"pca"``).
    k:
        Neighbours (``"knn"``).
    percentile:
        Percentile of the dev scores that becomes the threshold (score 1).
    max_reference:
        At most this many training rows are used (seeded random subset).
    z2_cap:
        Per-pixel cap of the squared standardised residual (``"pca"``).
    seed:
        Seed of the reference subset and of the randomised SVD.

    Fitted attributes: ``mean_`` (P,), ``components_`` (K, P), ``floor_`` (P,) (``"pca"``);
    ``reference_`` (R, D) (``"knn"``); ``threshold_`` (raw score at the dev percentile);
    ``dev_fraction_flagged_``; ``fingerprint_`` (of the network weights the features came from,
    or None). The settings are checked by :meth:`fit`.
    """

    def __init__(self, method: str = "pca", *, n_components: int = 16, k: int = 10,
                 percentile: float = 99.0, max_reference: int = 5000, z2_cap: float = 100.0,
                 seed: int = 0) -> None:
        self.method = method
        self.n_components = n_components
        self.k = k
        self.percentile = percentile
        self.max_reference = max_reference
        self.z2_cap = z2_cap
        self.seed = seed

    def _check_settings(self) -> None:
        if self.method not in METHODS:
            raise InputDataError(f"domain shift method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.percentile <= 100:
            raise InputDataError(f"percentile must be in (0, 100], got {self.percentile}")

    # ------------------------------------------------------------------ fitting

    def _raw(self, x: np.ndarray, error: np.ndarray | None = None, chunk: int = 512) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise InputDataError(f"domain shift needs (N, P) input, got shape {x.shape}")
        out = np.empty(len(x))
        for a in range(0, len(x), chunk):
            xb = x[a:a + chunk]
            if self.method == "pca":
                if xb.shape[1] != self.mean_.shape[0]:
                    raise InputDataError(
                        f"domain shift was fitted on {self.mean_.shape[0]} pixels, got {xb.shape[1]}")
                r = pca_residual(xb - self.mean_, self.components_)
                var = self.floor_[None, :] ** 2
                if error is not None:
                    e = np.asarray(error[a:a + chunk], np.float64)
                    var = var + np.where(np.isfinite(e) & (e < BAD_ERROR), e, np.inf) ** 2
                with np.errstate(divide="ignore", invalid="ignore"):
                    z2 = np.minimum(r * r / var, float(self.z2_cap))
                usable = np.isfinite(var) & np.isfinite(z2)
                z2 = np.where(usable, z2, 0.0)
                out[a:a + chunk] = z2.sum(axis=1) / np.maximum(usable.sum(axis=1), 1)
            else:
                xt = torch.from_numpy(xb)
                d = torch.cdist(xt, torch.from_numpy(self.reference_))
                kk = min(int(self.k), d.shape[1])
                out[a:a + chunk] = d.topk(kk, largest=False).values.mean(dim=1).numpy()
        return out

    def fit(self, train: np.ndarray, dev: np.ndarray, *, train_error: np.ndarray | None = None,
            dev_error: np.ndarray | None = None, network_fingerprint: str | None = None) -> DomainShift:
        """Fit on training rows ``train`` (N, P) and set the threshold on ``dev`` (M, P) (the
        same features: normalised network input for ``"pca"``, embeddings for ``"knn"``);
        ``*_error`` (same shapes): normalised flux errors (``"pca"``; None: unknown);
        ``network_fingerprint``: of the weights the features belong to
        (:func:`~starlabels.inference.label_coverage.fingerprint`). Returns ``self``."""
        self._check_settings()
        train = np.asarray(train, np.float64)
        dev = np.asarray(dev, np.float64)
        ok = np.isfinite(train).all(axis=1)
        if ok.sum() < 2 or len(dev) < 1:
            raise InputDataError("domain shift needs >= 2 finite training rows and >= 1 dev row")
        rng = np.random.default_rng(self.seed)
        rows = np.flatnonzero(ok)
        if len(rows) > self.max_reference:
            rows = np.sort(rng.choice(rows, int(self.max_reference), replace=False))
        x = train[rows]
        if self.method == "pca":
            self.mean_ = x.mean(axis=0)
            c = x - self.mean_
            q = int(min(int(self.n_components), min(c.shape) - 1))
            if q < 1:
                raise InputDataError("domain shift (pca) needs at least 2 training rows and 2 pixels")
            v = randomized_right_singular_vectors(
                torch.from_numpy(c), min(q + 8, min(c.shape)), niter=4,
                generator=torch.Generator().manual_seed(int(self.seed)))
            self.components_ = v[:, :q].T.numpy().copy()
            r = pca_residual(c, self.components_)
            self.floor_ = np.sqrt(np.mean(r * r, axis=0)) + 1e-6
        else:
            self.reference_ = x.copy()
        raw = self._raw(dev, dev_error)
        raw = raw[np.isfinite(raw)]
        if raw.size == 0:
            raise InputDataError("domain shift: no finite dev score")
        self.threshold_ = float(np.percentile(raw, self.percentile))
        if not self.threshold_ > 0:
            self.threshold_ = float(np.max(raw)) or 1.0
        self.dev_fraction_flagged_ = float(np.mean(raw > self.threshold_))
        self.fingerprint_ = network_fingerprint
        return self

    def score(self, x: np.ndarray, error: np.ndarray | None = None) -> np.ndarray:
        """(N,) domain-shift scores of features ``x`` (N, P) (and normalised errors for
        ``"pca"``), in units of the dev threshold: > 1 means less like the training spectra than
        ``percentile`` % of the dev spectra. NaN rows stay NaN."""
        if not hasattr(self, "threshold_"):
            raise InputDataError("DomainShift is not fitted; call fit first")
        x = np.asarray(x, np.float64)
        out = np.full(len(x), np.nan)
        ok = np.isfinite(x).all(axis=1) if x.ndim == 2 else np.zeros(0, bool)
        if ok.any():
            e = None if error is None else np.asarray(error)[ok]
            out[ok] = self._raw(x[ok], e) / self.threshold_
        return out

    transform = score

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """Settings and fitted state: JSON-able ``meta`` plus numpy ``arrays``."""
        meta = {"method": self.method, "n_components": int(self.n_components), "k": int(self.k),
                "percentile": float(self.percentile), "max_reference": int(self.max_reference),
                "z2_cap": float(self.z2_cap), "seed": int(self.seed),
                "fingerprint": getattr(self, "fingerprint_", None),
                "threshold": getattr(self, "threshold_", None),
                "dev_fraction_flagged": getattr(self, "dev_fraction_flagged_", None), "format": 1}
        names = ("mean_", "components_", "floor_") if self.method == "pca" else ("reference_",)
        arrays = {n.rstrip("_"): np.ascontiguousarray(getattr(self, n), np.float32)
                  for n in names if hasattr(self, n)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DomainShift:
        """The estimator of a :meth:`to_dict` (fitted when the dict holds a threshold)."""
        meta, arrays = d["meta"], d["arrays"]
        obj = cls(meta["method"], n_components=meta["n_components"], k=meta["k"],
                  percentile=meta["percentile"], max_reference=meta["max_reference"],
                  z2_cap=meta["z2_cap"], seed=meta["seed"])
        for name, a in arrays.items():
            setattr(obj, name + "_", np.asarray(a, np.float64))
        if meta.get("threshold") is not None:
            obj.threshold_ = float(meta["threshold"])
            obj.dev_fraction_flagged_ = float(meta.get("dev_fraction_flagged") or 0.0)
            obj.fingerprint_ = meta.get("fingerprint")
        return obj

    def save(self, folder: str | Path) -> Path:
        """Write ``domain_shift.safetensors`` into a model folder (atomic replace)."""
        from safetensors.numpy import save as safetensors_bytes

        from starlabels.io.atomic_file import atomic_write

        d = self.to_dict()
        blob = safetensors_bytes(d["arrays"], metadata={"domain_shift": json.dumps(d["meta"])})
        return atomic_write(Path(folder) / DOMAIN_SHIFT_FILE, lambda fh: fh.write(blob), overwrite=True)


def pca_residual(centred: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``centred − (centred @ componentsᵀ) @ components``: (N, P) float64 rows minus their projection
    on the (K, P) orthonormal ``components``. Torch's matrix products, not NumPy's: their summation
    order follows torch's thread count, the one setting a catalog run controls (``predict --threads``,
    Dask's ``TorchThreads``), where NumPy's BLAS threads (Dask workers: 1; a process: all cores)
    made the score differ in the last bits between a cluster and one process."""
    c = torch.from_numpy(np.ascontiguousarray(centred, np.float64))
    v = torch.from_numpy(np.ascontiguousarray(components, np.float64))
    return (c - (c @ v.T) @ v).numpy()


def load_domain_shift(folder: str | Path, network: torch.nn.Module | None = None) -> DomainShift | None:
    """The domain-shift estimator stored in a model folder, or None (no file, or one fitted for
    other network weights)."""
    from safetensors import safe_open

    path = Path(folder) / DOMAIN_SHIFT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["domain_shift"])
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:
        raise ModelFormatError(f"{path}: not a readable domain-shift file ({exc})") from None
    ds = DomainShift.from_dict({"meta": meta, "arrays": arrays})
    stored = getattr(ds, "fingerprint_", None)
    if network is not None and stored is not None and stored != fingerprint(network):
        warnings.warn(f"{path} was fitted for other network weights; ignored (retrain or refit it)",
                      stacklevel=2)
        return None
    return ds
