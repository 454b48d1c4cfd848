"""Label-coverage uncertainty: how far a spectrum lies from the training spectra that had a label.

Monte-Carlo dropout and a variance head only know the stars the loss saw. A survey's training
labels often miss whole classes of stars — ASPCAP gave no log g for dwarfs in DR14, so astroNN
never trained log g on a dwarf (Leung & Bovy 2019, Fig. 7) — and for those stars the network
extrapolates with confidence: on our accuracy benchmark a BCNN trained without the dwarfs' log g
put them 0.9–2.7 dex off with only ~1.6× the giants' MC-dropout σ, and an ensemble of networks
agreed on the same wrong answer (their spread on dwarfs was 0.08 dex).

This module adds a variance part that measures *label coverage* directly, per label, in the
network's own embedding (:meth:`~starlabels.models.layers.LabelNetwork.embedding`, the last hidden
layer):

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
not scaled by the calibration (it is ~0 on a dev set, where calibrations are fitted). Fit it with
:func:`fit_coverage` after training; :func:`starlabels.predict` then adds the part ``"coverage"``
to every prediction (``coverage=False`` leaves it out). The dev set should span the SNRs the
model will be used at (e.g. dev spectra degraded with :func:`starlabels.data.augment.degrade_snr`):
measured on the benchmark's OOD model, a d_ref from SNR 200–400 dev spectra alone put a coverage
term on 23% of in-distribution giants observed at SNR 20–60.

Stored in the model folder as ``coverage.safetensors`` (tensors ``reference`` (R, D) float32,
``has_label`` (R, L) uint8; metadata ``k``, ``percentile``, ``d_ref`` (L × B), ``log_snr`` (B bin
centres), ``tau``, ``label_names``
and a fingerprint of the network weights — a coverage file left beside retrained weights is
ignored with a warning).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.constants import MISSING
from starlabels.errors import InputDataError, ModelFormatError

__all__ = ["COVERAGE_FILE", "Coverage", "embeddings", "fit_coverage", "load_coverage"]

COVERAGE_FILE = "coverage.safetensors"


def fingerprint(network: torch.nn.Module) -> str:
    """Short SHA-256 of the network's weights (names and bytes, sorted by name)."""
    h = hashlib.sha256()
    for name, t in sorted(network.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Coverage:
    """The fitted coverage of one model (see the module docstring). Arrays: ``reference`` (R, D),
    ``has_label`` (R, L) bool, ``d_ref`` (L, B) at the SNR bin centres ``log_snr`` (B,) (natural
    log), ``tau`` (L,) (NaN: no coverage term for that label)."""

    reference: np.ndarray
    has_label: np.ndarray
    d_ref: np.ndarray
    log_snr: np.ndarray
    tau: np.ndarray
    k: int
    percentile: float
    label_names: list[str]
    fingerprint: str

    def distances(self, emb: np.ndarray | torch.Tensor, chunk: int = 1024) -> np.ndarray:
        """(N, D) embeddings → (N, L) mean distance to the k nearest reference rows with each label.

        One distance matrix per chunk for all labels; labels sharing the same reference rows
        share the nearest-neighbour search."""
        e = torch.as_tensor(emb, dtype=torch.float32)
        ref = torch.from_numpy(np.ascontiguousarray(self.reference, np.float32)).to(e.device)
        cols, inverse = np.unique(self.has_label.T, axis=0, return_inverse=True)
        out = np.full((e.shape[0], self.has_label.shape[1]), np.nan)
        for a in range(0, e.shape[0], chunk):
            d = torch.cdist(e[a:a + chunk], ref)
            for j, col in enumerate(cols):
                n_ref = int(col.sum())
                if n_ref == 0:
                    continue
                kk = min(self.k, n_ref)
                dj = d[:, torch.from_numpy(col.astype(bool)).to(d.device)]
                mean_k = dj.topk(kk, dim=1, largest=False).values.mean(dim=1).double().cpu().numpy()
                out[a:a + chunk][:, np.flatnonzero(inverse.ravel() == j)] = mean_k[:, None]
        return out

    def reference_distance(self, snr: np.ndarray | None) -> np.ndarray:
        """(N, L) d_ref at each spectrum's SNR (interpolated in log SNR; the median bin's value
        where the SNR is unknown)."""
        L = self.d_ref.shape[0]
        n = 1 if snr is None else len(snr)
        ls = np.full(n, np.nan) if snr is None else np.log(np.clip(np.asarray(snr, np.float64), 1e-3, None))
        out = np.empty((n, L))
        for j in range(L):
            row = self.d_ref[j]
            good = np.isfinite(row)
            if not good.any():
                out[:, j] = np.nan
                continue
            fill = float(np.median(row[good]))
            out[:, j] = np.where(np.isfinite(ls), np.interp(ls, self.log_snr[good], row[good]), fill)
        return out

    def variance(self, emb: np.ndarray | torch.Tensor, snr: np.ndarray | None = None) -> np.ndarray:
        """(N, D) embeddings (and (N,) SNRs) → (N, L) coverage variance (label units²; 0 where
        not defined)."""
        ratio = self.distances(emb) / self.reference_distance(snr)
        excess = np.clip(ratio - 1.0, 0.0, None)
        return np.nan_to_num((self.tau * excess) ** 2, nan=0.0)

    def save(self, folder: str | Path) -> Path:
        """Write ``coverage.safetensors`` into a model folder (atomic replace)."""
        from safetensors.numpy import save_file

        path = Path(folder) / COVERAGE_FILE
        meta = {"k": self.k, "percentile": self.percentile,
                "d_ref": [_nan_list(r) for r in self.d_ref], "log_snr": _nan_list(self.log_snr),
                "tau": _nan_list(self.tau), "label_names": list(self.label_names),
                "fingerprint": self.fingerprint, "format": 1}
        tmp = path.with_name(path.name + ".tmp")
        save_file({"reference": np.ascontiguousarray(self.reference, np.float32),
                   "has_label": np.ascontiguousarray(self.has_label, np.uint8)},
                  str(tmp), metadata={"coverage": json.dumps(meta)})
        tmp.replace(path)
        return path


def _nan_list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]


def load_coverage(folder: str | Path, network: torch.nn.Module, label_names: list[str]) -> Coverage | None:
    """The coverage stored in a model folder, or None (no file, or one made for other weights)."""
    from safetensors import safe_open

    path = Path(folder) / COVERAGE_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["coverage"])
            reference, has_label = fh.get_tensor("reference"), fh.get_tensor("has_label").astype(bool)
    except Exception as exc:
        raise ModelFormatError(f"{path}: not a readable coverage file ({exc})") from None
    if list(meta["label_names"]) != list(label_names) or has_label.shape[1] != len(label_names):
        raise ModelFormatError(f"{path}: labels {meta['label_names']} differ from the model's {label_names}")
    if meta["fingerprint"] != fingerprint(network):
        warnings.warn(f"{path} was fitted for other network weights; ignored (run fit_coverage again)",
                      stacklevel=2)
        return None
    as_arr = lambda v: np.array([np.nan if x is None else x for x in v], np.float64)  # noqa: E731
    return Coverage(reference=reference, has_label=has_label,
                    d_ref=np.array([as_arr(r) for r in meta["d_ref"]]).reshape(len(label_names), -1),
                    log_snr=as_arr(meta["log_snr"]), tau=as_arr(meta["tau"]), k=int(meta["k"]),
                    percentile=float(meta["percentile"]),
                    label_names=list(label_names), fingerprint=meta["fingerprint"])


@torch.no_grad()
def embed_input(im: Any, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Preprocessed network input (n, P) (before the spectrum scaler) → (n, D) embeddings, eval
    mode, on the network's device."""
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


def embeddings(
    model: Any, flux: Any, error: Any = None, *, bitmask: Any = None, preprocessed: bool = False,
    chunk_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) embeddings of spectra (NaN rows for invalid spectra), the (N,) valid mask and the
    (N,) SNRs (median f/σ, as :func:`starlabels.predict` measures them), with the model's own
    preprocessing (raw apStar flux) or of ``preprocessed=True`` input."""
    from starlabels.inference.grid_input import as_arrays
    from starlabels.inference.predict import _prepare, resolve

    im = resolve(model)
    f, e, b, has_error = as_arrays(flux, error, bitmask, im, preprocessed)
    out: np.ndarray | None = None
    valid = np.zeros(len(f), bool)
    snr = np.full(len(f), np.nan)
    for a in range(0, len(f), chunk_size):
        sl = slice(a, min(len(f), a + chunk_size))
        bl = None if b is None else b[sl]
        x, _, ok, snr[sl], _ = _prepare(im, f[sl], e[sl], bl, preprocessed, has_error)
        valid[sl] = ok
        if not ok.any():
            continue
        emb = embed_input(im, x).double().cpu().numpy()
        if out is None:
            out = np.full((len(f), emb.shape[1]), np.nan)
        out[np.arange(sl.start, sl.stop)[ok]] = emb
    if out is None:
        raise InputDataError("no valid spectrum to embed")
    return out, valid, snr


def _present(labels: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels, np.float64)
    return np.isfinite(lab) & (lab != MISSING)


def fit_coverage(
    model: Any,
    train_flux: Any,
    train_error: Any,
    train_labels: Any,
    dev_flux: Any,
    dev_error: Any,
    dev_labels: Any,
    *,
    train_bitmask: Any = None,
    dev_bitmask: Any = None,
    preprocessed: bool = False,
    k: int = 10,
    percentile: float = 95.0,
    snr_bins: int = 6,
    max_reference: int = 5000,
    seed: int = 0,
    save: bool | str | Path = False,
) -> Coverage:
    """Fit the label coverage of ``model`` (module docstring) and attach it to the model.

    ``train_*``: training spectra and their (N, L) labels (MISSING/NaN where a star lacks one) —
    up to ``max_reference`` of those with any label become the reference set (a seeded random
    subset); ``dev_*``: held-out spectra with the labels *as the training data would have them*
    (MISSING where the survey gives none — not true labels), spanning the SNRs of use; they set
    d_ref in up to ``snr_bins`` equal-count SNR bins (at least 100 dev spectra a bin).
    ``save``: True writes ``coverage.safetensors`` into the folder the model was loaded from, a
    path into that folder. Returns the :class:`Coverage`.
    """
    from starlabels.inference.predict import resolve

    if k < 1 or not 0 < percentile <= 100 or max_reference < 1:
        raise InputDataError("fit_coverage needs k >= 1, 0 < percentile <= 100 and max_reference >= 1")
    im = resolve(model)
    names = list(im.label_names)
    L = len(names)
    tl = np.asarray(train_labels, np.float64).reshape(-1, L)
    dl = np.asarray(dev_labels, np.float64).reshape(-1, L)
    t_has = _present(tl)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(t_has.any(axis=1))
    if len(candidates) == 0:
        raise InputDataError("fit_coverage: no training row has any label")
    rows = np.sort(rng.choice(candidates, size=min(max_reference, len(candidates)), replace=False))
    pick = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
    emb, ok, _ = embeddings(im, np.asarray(train_flux)[rows], pick(train_error), bitmask=pick(train_bitmask),
                         preprocessed=preprocessed)
    reference = emb[ok].astype(np.float32)
    has_label = t_has[rows][ok]
    with np.errstate(invalid="ignore"):
        tau = np.array([np.std(tl[t_has[:, j], j]) if t_has[:, j].sum() > 1 else np.nan for j in range(L)])
    d_emb, d_ok, d_snr = embeddings(im, dev_flux, dev_error, bitmask=dev_bitmask, preprocessed=preprocessed)
    d_snr = d_snr[d_ok]
    if not np.isfinite(d_snr).all():  # no errors given: one bin
        d_snr = np.ones(len(d_snr))
    n_bins = int(max(1, min(snr_bins, len(d_snr) // 100)))
    bins = np.array_split(np.argsort(d_snr, kind="stable"), n_bins)
    log_snr = np.array([np.median(np.log(d_snr[i])) for i in bins])
    cov = Coverage(reference=reference, has_label=has_label, d_ref=np.full((L, n_bins), np.nan),
                   log_snr=log_snr, tau=tau, k=int(k),
                   percentile=float(percentile), label_names=names,
                   fingerprint=fingerprint(im.trained.network))
    d = cov.distances(d_emb[d_ok])
    d_has = _present(dl)[d_ok]
    for i, rows_b in enumerate(bins):
        for j in range(L):
            dj = d[rows_b][d_has[rows_b, j], j]
            dj = dj[np.isfinite(dj)]
            if dj.size >= 5:
                cov.d_ref[j, i] = float(np.percentile(dj, percentile))
    if not np.isfinite(cov.d_ref).any():
        raise InputDataError("fit_coverage: no label has 5 dev rows with that label and reference rows")
    tm = im.trained
    tm.coverage = cov
    if save:
        folder = im.folder if save is True else Path(save)
        if folder is None:
            raise ModelFormatError("the model was not loaded from a folder; pass save=<model folder>")
        cov.save(folder)
    return cov
