"""Label-coverage uncertainty: how far a spectrum lies from the training spectra that had a label.

Monte-Carlo dropout and a variance head only know the stars the loss saw. A survey's training
labels often miss whole classes of stars — ASPCAP gave no log g for dwarfs in DR14, so astroNN
never trained log g on a dwarf (Leung & Bovy 2019, Fig. 7) — and for those stars the network
extrapolates with confidence: on our accuracy benchmark a BCNN trained without the dwarfs' log g
put them 0.9–2.7 dex off with only ~1.6× the giants' MC-dropout σ, and an ensemble of networks
agreed on the same wrong answer (their spread on dwarfs was 0.08 dex).

:class:`LabelCoverage` measures *label coverage* directly, per label, in the network's own
embedding (:meth:`~starlabels.models.layers.LabelNetwork.embedding`, the last hidden layer):

- reference set: the embeddings of (up to ``max_reference``) training spectra, and which labels
  each of them had;
- d_k(x): the mean Euclidean distance from a spectrum's embedding to its ``k`` nearest reference
  spectra *that had label k*;
- d_ref,k(SNR): the ``percentile``-th percentile of d_k over held-out dev spectra with label k,
  in bins of SNR (noise moves a spectrum's embedding away from the reference set, so the edge of
  the covered region depends on the SNR), interpolated in log SNR between the bins' median SNRs
  and held constant beyond them;
- coverage variance: σ²_cov,k = (τ_k · max(0, d_k/d_ref,k(SNR) − 1))², with τ_k the standard
  deviation of label k in the training set: no extra uncertainty inside the covered region, one
  prior width per reference radius of extrapolation beyond it.

It is a heuristic in the sense that its scale (one τ per d_ref) is a choice, not a fit; it is
not scaled by the calibration (it is ~0 on a dev set, where calibrations are fitted). The
estimator works on embeddings; :func:`starlabels.inference.coverage.fit_coverage` embeds a
model's spectra, fits it and attaches it to the model, and :func:`starlabels.predict` then adds
the part ``"coverage"`` to every prediction. The dev set should span the SNRs the model will be
used at (e.g. dev spectra degraded with :func:`starlabels.data.augment.degrade_snr`): measured on
the benchmark's OOD model, a d_ref from SNR 200–400 dev spectra alone put a coverage term on 23%
of in-distribution giants observed at SNR 20–60.

Stored in the model folder as ``coverage.safetensors`` (tensors ``reference`` (R, D) float32,
``has_label`` (R, L) uint8; metadata ``k``, ``percentile``, ``d_ref`` (L × B), ``log_snr`` (B bin
centres), ``tau``, ``label_names`` and a fingerprint of the network weights — a coverage file left
beside retrained weights is ignored with a warning). This module runs no predictions.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.constants import MISSING
from starlabels.errors import InputDataError, ModelFormatError

__all__ = ["COVERAGE_FILE", "LabelCoverage", "embed_input", "fingerprint", "load_coverage"]

COVERAGE_FILE = "coverage.safetensors"


def fingerprint(network: torch.nn.Module) -> str:
    """Short SHA-256 of the network's weights (names and bytes, sorted by name)."""
    h = hashlib.sha256()
    for name, t in sorted(network.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def has_labels(labels: np.ndarray) -> np.ndarray:
    """(N, L) bool: the label is present (finite and not ``MISSING``)."""
    lab = np.asarray(labels, np.float64)
    return np.isfinite(lab) & (lab != MISSING)


class LabelCoverage:
    """Label coverage of one network's embedding (see the module docstring).

    Parameters
    ----------
    k:
        Nearest reference spectra averaged per label.
    percentile:
        Percentile of the dev spectra's distances that becomes d_ref (the covered region's edge).
    snr_bins:
        At most this many equal-count SNR bins of d_ref (at least 100 dev spectra a bin).
    max_reference:
        At most this many training rows with any label form the reference set (seeded subset).
    seed:
        Seed of the reference subset.

    Fitted attributes: ``reference_`` (R, D) float32 embeddings, ``has_label_`` (R, L) bool,
    ``d_ref_`` (L, B) at the SNR bin centres ``log_snr_`` (B,) (natural log), ``tau_`` (L,)
    (label units; NaN: no coverage term for that label), ``label_names_`` (L names) and
    ``fingerprint_`` (of the network weights the embeddings came from, or None).
    """

    def __init__(self, k: int = 10, percentile: float = 95.0, snr_bins: int = 6,
                 max_reference: int = 5000, seed: int = 0) -> None:
        self.k = k
        self.percentile = percentile
        self.snr_bins = snr_bins
        self.max_reference = max_reference
        self.seed = seed

    def _check_settings(self) -> None:
        if self.k < 1 or not 0 < self.percentile <= 100 or self.max_reference < 1:
            raise InputDataError("label coverage needs k >= 1, 0 < percentile <= 100 and max_reference >= 1")

    def reference_rows(self, train_labels: np.ndarray) -> np.ndarray:
        """Sorted indices of the training rows :meth:`fit` takes as reference: a seeded random
        subset of up to ``max_reference`` rows that have any label. A caller may embed only
        these rows (the others' embeddings are not read)."""
        self._check_settings()
        candidates = np.flatnonzero(has_labels(train_labels).any(axis=1))
        if len(candidates) == 0:
            raise InputDataError("label coverage: no training row has any label")
        rng = np.random.default_rng(self.seed)
        size = min(int(self.max_reference), len(candidates))
        return np.sort(rng.choice(candidates, size=size, replace=False))

    def fit(self, train_embedding: np.ndarray, train_labels: np.ndarray, dev_embedding: np.ndarray,
            dev_labels: np.ndarray, dev_snr: np.ndarray | None = None, *,
            label_names: Sequence[str] | None = None,
            network_fingerprint: str | None = None) -> LabelCoverage:
        """Fit on embeddings; returns ``self``.

        ``train_embedding`` (N, D): embeddings of the training rows — only the rows of
        :meth:`reference_rows` are read, and NaN rows (invalid spectra) are left out;
        ``train_labels`` (N, L) with MISSING/NaN where a star lacks a label (also give τ);
        ``dev_embedding`` (M, D) of held-out spectra (NaN rows skipped) with ``dev_labels`` (M, L)
        *as the training data would have them* (MISSING where the survey gives none — not true
        labels) and their SNRs ``dev_snr`` (M,) (None or any non-finite: one bin);
        ``label_names`` (default ``"0"``, ``"1"``…); ``network_fingerprint`` of the weights the
        embeddings came from (:func:`fingerprint`).
        """
        self._check_settings()
        tl = np.asarray(train_labels, np.float64)
        L = tl.shape[1]
        dl = np.asarray(dev_labels, np.float64).reshape(-1, L)
        names = [str(j) for j in range(L)] if label_names is None else [str(n) for n in label_names]
        if len(names) != L:
            raise InputDataError(f"{len(names)} label names for {L} labels")
        rows = self.reference_rows(tl)
        emb = np.asarray(train_embedding)[rows]
        ok = np.isfinite(emb).all(axis=1)
        t_has = has_labels(tl)
        with np.errstate(invalid="ignore"):
            tau = np.array([np.std(tl[t_has[:, j], j]) if t_has[:, j].sum() > 1 else np.nan
                            for j in range(L)])
        d_emb = np.asarray(dev_embedding)
        d_ok = np.isfinite(d_emb).all(axis=1)
        d_snr = (np.full(len(d_emb), np.nan) if dev_snr is None else np.asarray(dev_snr, np.float64))[d_ok]
        if not np.isfinite(d_snr).all():  # no errors given: one bin
            d_snr = np.ones(len(d_snr))
        n_bins = int(max(1, min(self.snr_bins, len(d_snr) // 100)))
        bins = np.array_split(np.argsort(d_snr, kind="stable"), n_bins)
        self.reference_ = emb[ok].astype(np.float32)
        self.has_label_ = t_has[rows][ok]
        self.log_snr_ = np.array([np.median(np.log(d_snr[i])) for i in bins])
        self.tau_ = tau
        self.label_names_ = names
        self.fingerprint_ = network_fingerprint
        self.d_ref_ = np.full((L, n_bins), np.nan)
        d = self.distances(d_emb[d_ok])
        d_has = has_labels(dl)[d_ok]
        for i, rows_b in enumerate(bins):
            for j in range(L):
                dj = d[rows_b][d_has[rows_b, j], j]
                dj = dj[np.isfinite(dj)]
                if dj.size >= 5:
                    self.d_ref_[j, i] = float(np.percentile(dj, self.percentile))
        if not np.isfinite(self.d_ref_).any():
            raise InputDataError("label coverage: no label has 5 dev rows with that label and reference rows")
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "d_ref_"):
            raise InputDataError("this LabelCoverage is not fitted; call fit (or fit_coverage) first")

    # -------------------------------------------------------------- using
    def distances(self, emb: np.ndarray | torch.Tensor, chunk: int = 1024) -> np.ndarray:
        """(N, D) embeddings → (N, L) mean distance to the k nearest reference rows with each label.

        One distance matrix per chunk for all labels; labels sharing the same reference rows
        share the nearest-neighbour search. In float64, about the reference rows' mean: ``cdist``
        computes |a|² + |b|² − 2a·b, and embeddings lie close together (on the demo model the
        nearest reference is ~0.6 % of an embedding's norm away), so in float32 that cancellation
        left distances up to 6e-3 off (median 3e-4) and moved with the BLAS's summation order."""
        if not hasattr(self, "reference_"):
            self._check_fitted()
        e = torch.as_tensor(emb, dtype=torch.float64)
        ref, centre = (t.to(e.device) for t in self._centred_reference())
        e = e - centre
        cols, inverse = np.unique(self.has_label_.T, axis=0, return_inverse=True)
        out = np.full((e.shape[0], self.has_label_.shape[1]), np.nan)
        for a in range(0, e.shape[0], chunk):
            d = torch.cdist(e[a:a + chunk], ref)
            for j, col in enumerate(cols):
                n_ref = int(col.sum())
                if n_ref == 0:
                    continue
                kk = min(int(self.k), n_ref)
                dj = d[:, torch.from_numpy(col.astype(bool)).to(d.device)]
                mean_k = dj.topk(kk, dim=1, largest=False).values.mean(dim=1).cpu().numpy()
                out[a:a + chunk][:, np.flatnonzero(inverse.ravel() == j)] = mean_k[:, None]
        return out

    def _centred_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``reference_`` (R, D) in float64 about its mean, and that mean (D,): memoised per
        estimator while its ``reference_`` array is the same (5000 × 512 takes 7 ms on one thread,
        against 37 ms for the distances of 256 spectra); a new ``reference_`` is derived afresh."""
        hit = _CENTRED.get(self)
        if hit is not None and hit[0] is self.reference_:
            return hit[1], hit[2]
        ref = torch.from_numpy(np.asarray(self.reference_, np.float64))
        centre = ref.mean(dim=0)
        ref = ref - centre
        _CENTRED[self] = (self.reference_, ref, centre)
        return ref, centre

    def reference_distance(self, snr: np.ndarray | None) -> np.ndarray:
        """(N, L) d_ref at each spectrum's SNR (interpolated in log SNR; the median bin's value
        where the SNR is unknown)."""
        self._check_fitted()
        L = self.d_ref_.shape[0]
        n = 1 if snr is None else len(snr)
        ls = np.full(n, np.nan) if snr is None else np.log(np.clip(np.asarray(snr, np.float64), 1e-3, None))
        out = np.empty((n, L))
        for j in range(L):
            row = self.d_ref_[j]
            good = np.isfinite(row)
            if not good.any():
                out[:, j] = np.nan
                continue
            fill = float(np.median(row[good]))
            out[:, j] = np.where(np.isfinite(ls), np.interp(ls, self.log_snr_[good], row[good]), fill)
        return out

    def variance(self, emb: np.ndarray | torch.Tensor, snr: np.ndarray | None = None) -> np.ndarray:
        """(N, D) embeddings (and (N,) SNRs) → (N, L) coverage variance (label units²; 0 where
        not defined)."""
        ratio = self.distances(emb) / self.reference_distance(snr)
        excess = np.clip(ratio - 1.0, 0.0, None)
        return np.nan_to_num((self.tau_ * excess) ** 2, nan=0.0)

    transform = variance

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """Settings and fitted state: JSON-able ``meta`` plus numpy ``arrays`` (``reference``,
        ``has_label``) — what ``coverage.safetensors`` holds."""
        self._check_fitted()
        meta = {"k": int(self.k), "percentile": float(self.percentile), "snr_bins": int(self.snr_bins),
                "max_reference": int(self.max_reference), "seed": int(self.seed),
                "d_ref": [_nan_list(r) for r in self.d_ref_], "log_snr": _nan_list(self.log_snr_),
                "tau": _nan_list(self.tau_), "label_names": list(self.label_names_),
                "fingerprint": self.fingerprint_, "format": 1}
        arrays = {"reference": np.ascontiguousarray(self.reference_, np.float32),
                  "has_label": np.ascontiguousarray(self.has_label_, np.uint8)}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelCoverage:
        """The fitted estimator of a :meth:`to_dict` (also of files written before the settings
        ``snr_bins``, ``max_reference`` and ``seed`` were stored: their defaults)."""
        meta, arrays = d["meta"], d["arrays"]
        obj = cls(k=int(meta["k"]), percentile=float(meta["percentile"]),
                  snr_bins=int(meta.get("snr_bins", 6)), max_reference=int(meta.get("max_reference", 5000)),
                  seed=int(meta.get("seed", 0)))
        names = [str(n) for n in meta["label_names"]]
        obj.reference_ = np.asarray(arrays["reference"], np.float32)
        obj.has_label_ = np.asarray(arrays["has_label"]).astype(bool)
        obj.d_ref_ = np.array([_as_floats(r) for r in meta["d_ref"]]).reshape(len(names), -1)
        obj.log_snr_ = _as_floats(meta["log_snr"])
        obj.tau_ = _as_floats(meta["tau"])
        obj.label_names_ = names
        obj.fingerprint_ = meta.get("fingerprint")
        return obj

    def save(self, folder: str | Path) -> Path:
        """Write ``coverage.safetensors`` into a model folder (atomic replace)."""
        from safetensors.numpy import save as safetensors_bytes

        from starlabels.io.atomic_file import atomic_write

        d = self.to_dict()
        blob = safetensors_bytes(d["arrays"], metadata={"coverage": json.dumps(d["meta"])})
        return atomic_write(Path(folder) / COVERAGE_FILE, lambda fh: fh.write(blob), overwrite=True)

    def __repr__(self) -> str:
        state = "fitted" if hasattr(self, "d_ref_") else "not fitted"
        return (f"LabelCoverage(k={self.k}, percentile={self.percentile}, snr_bins={self.snr_bins}, "
                f"max_reference={self.max_reference}, seed={self.seed}) [{state}]")


#: Each estimator's float64 reference about its mean (dropped with the estimator, so it is not
#: fitted state): ``reference_`` array it was derived from → (that array, centred rows, mean).
_CENTRED: weakref.WeakKeyDictionary[LabelCoverage, tuple[np.ndarray, torch.Tensor, torch.Tensor]] = (
    weakref.WeakKeyDictionary())


def _nan_list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]


def _as_floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in values], np.float64)


def load_coverage(
    folder: str | Path, network: torch.nn.Module, label_names: list[str]
) -> LabelCoverage | None:
    """The coverage stored in a model folder, or None (no file, or one made for other weights)."""
    from safetensors import safe_open

    path = Path(folder) / COVERAGE_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["coverage"])
            arrays = {"reference": fh.get_tensor("reference"), "has_label": fh.get_tensor("has_label")}
        cov = LabelCoverage.from_dict({"meta": meta, "arrays": arrays})
    except Exception as exc:
        raise ModelFormatError(f"{path}: not a readable coverage file ({exc})") from None
    if cov.label_names_ != list(label_names) or cov.has_label_.shape[1] != len(label_names):
        raise ModelFormatError(f"{path}: labels {cov.label_names_} differ from the model's {label_names}")
    if cov.fingerprint_ != fingerprint(network):
        warnings.warn(f"{path} was fitted for other network weights; ignored (run fit_coverage again)",
                      stacklevel=2)
        return None
    return cov


@torch.no_grad()
def embed_input(im: Any, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Preprocessed network input (n, P) (before the spectrum scaler) of a resolved model ``im``
    (:class:`~starlabels.inference.predict.InferenceModel`) → (n, D) embeddings, eval mode, on the
    network's device."""
    net = im.trained.network
    dev = next(net.parameters()).device
    ss = im.trained.spectrum_scaler
    xs = np.asarray(x.cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float32)
    if ss is not None:
        xs = np.asarray(ss.transform(xs), np.float32)
    was_training = net.training
    net.eval()
    try:
        parts = [net.embedding(torch.from_numpy(np.ascontiguousarray(xs[a:a + batch_size]))
                               .unsqueeze(1).to(dev)) for a in range(0, len(xs), batch_size)]
    finally:
        net.train(was_training)
    if not parts:
        return torch.zeros((0, 0))
    return torch.cat(parts)
