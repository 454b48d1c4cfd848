"""Import astroNN model folders (``ApogeeBCNN``, ``ApogeeBCNNCensored``) as starlabels models.

``from_astronn(folder)`` reads astroNN's ``astroNN_model_parameter.json`` and Keras
``model_weights.h5`` with h5py (no TensorFlow) and returns a :class:`~starlabels.models.folder.TrainedModel`
whose predictions equal astroNN's ``model.test(flux)`` (``bench/astronn_agreement.py``):

===========================================  ===================================================
astroNN (Keras, channels-last)                starlabels (torch, channels-first)
===========================================  ===================================================
``Conv1D`` kernel (k, in, out), ``"same"``    ``Conv1d`` weight (out, in, k), zero padding (3, 4)
``MaxPooling1D`` → ``Flatten`` (length-major) first ``Linear``: kernel rows permuted to channel-major
``Dense`` kernel (in, out)                    ``Linear`` weight (out, in)
``MCDropout(rate)``                           ``nn.Dropout(rate)`` (on inside ``mc_dropout``)
``output`` / ``variance_output`` (linear)     mean / log-variance heads (σ² = exp(log_var)·std²)
censored: ``BoolMask`` + 2 ``Dense`` per el.  per-element layers on the same windows; C and N are
                                              wider in astroNN: every element gets the widest
                                              sizes, the extra units' weights exactly zero
``aux_fullspec`` (``MaxNorm``), ``StopGrad``  latent layer (max-norm), ``StopGrad`` of the means
output ``concatenate`` order                  ``output_order`` (astroNN puts Fe after Mn)
``input_mean``/``input_std``                  ``SpectrumScaler`` (per-pixel mean, std)
``labels_mean``/``labels_std``                ``LabelScaler``
``apogee_continuum`` (its ``dr17_contmask``)  ``PreprocessConfig(continuum_weights="astronn")``
===========================================  ===================================================

What astroNN's folder does not hold is taken from an installed astroNN package when there is one
(found without importing it): the continuum mask (``continuum_mask``, default astroNN's
``dr17_contmask.npy``; without one the model takes only ``preprocessed=True`` input) and, for the
censored network, the ASPCAP DR14 element windows (``element_windows``: astroNN's
``aspcap_l31c_masks.npy`` or an ``.npz`` with ``windows`` and ``elements``).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.core.bitmask import testable
from starlabels.errors import InputFileError, ModelFormatError
from starlabels.models.astronn_keras import AstroNNFolder, read_folder
from starlabels.models.astronn_networks import ALIASES, build_bcnn, build_censored, n_pixels_of, read_trunk

__all__ = [
    "ASTRONN_DR14_ELEMENTS",
    "SUPPORTED",
    "astronn_label_name",
    "astronn_predict",
    "from_astronn",
    "load_astronn_windows",
]

#: Input length of astroNN's APOGEE networks: the gap-deleted 7514-pixel grid.
ASTRONN_N_PIXELS = 7514
#: astroNN model classes that can be imported.
SUPPORTED = ("ApogeeBCNN", "ApogeeBCNNCensored")
#: Bit order of astroNN's ``aspcap_l31c_masks.npy`` (``astroNN.apogee.aspcap_mask``).
ASTRONN_DR14_ELEMENTS = (
    "C",
    "CI",
    "N",
    "O",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "K",
    "Ca",
    "TI",
    "TiII",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Ge",
    "Ce",
    "Rb",
    "Y",
    "Nd",
)
_NAMED_LABELS = {
    "teff": ("TEFF", "K"),
    "logg": ("LOGG", "dex"),
    "m": ("M_H", "dex"),
    "alpha": ("ALPHA_M", "dex"),
    "fe": ("FE_H", "dex"),
    "fakemag": ("FAKEMAG", ""),
}


def astronn_label_name(name: str) -> tuple[str, str]:
    """astroNN ``targetname`` → (allStar-style name, unit): ``teff`` → TEFF (K), ``logg`` → LOGG,
    ``M`` → M_H, ``alpha`` → ALPHA_M, an element ``X`` → ``X_H`` (astroNN's abundances are [X/H];
    ``C1`` → CI_H, ``Ti2`` → TIII_H); anything else upper-cased, without unit."""
    key = str(name).strip().lower()
    if key in _NAMED_LABELS:
        return _NAMED_LABELS[key]
    key = ALIASES.get(key, key)
    if key in {e.lower() for e in ASTRONN_DR14_ELEMENTS}:
        return f"{key.upper()}_H", "dex"
    return str(name).strip().upper(), ""


# ------------------------------------------------------------------------------------------
# files astroNN's folder does not hold


def _astronn_data_file(name: str) -> Path | None:
    """A file of an installed astroNN's ``data`` folder, found without importing astroNN."""
    try:
        spec = importlib.util.find_spec("astroNN")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / name
        if path.is_file():
            return path
    return None


def load_astronn_windows(source: str | Path) -> dict[str, np.ndarray]:
    """Element windows by lower-case astroNN element name → (7514,) bool, from astroNN's
    ``aspcap_l31c_masks.npy`` (one bit per element) or an ``.npz`` with ``windows``/``elements``."""
    from starlabels.io.array_file import load_element_windows_npz, load_pixel_vector

    path = Path(source)
    if path.suffix == ".npz":
        windows, names = load_element_windows_npz(path)
        return {str(n).lower(): w for n, w in zip(names, windows, strict=True)}
    bits = load_pixel_vector(path, "astroNN element windows")
    if not np.issubdtype(bits.dtype, np.integer):
        raise InputFileError(path, f"astroNN element windows: expected astroNN's (7514,) integer bitmask, "
                                   f"got {bits.dtype} {bits.shape}")
    bits = testable(bits, 1 << (len(ASTRONN_DR14_ELEMENTS) - 1))  # int64 where its dtype cannot hold bit 21
    return {e.lower(): (bits & (1 << i)) != 0 for i, e in enumerate(ASTRONN_DR14_ELEMENTS)}


def _continuum_preprocessing(continuum_mask: Any, dr: int) -> tuple[dict | None, str | None]:
    from starlabels.preprocess.continuum_masks import load_continuum_mask
    from starlabels.preprocess.pipeline import PreprocessConfig

    source: Any = continuum_mask
    if source is None:
        source = _astronn_data_file(f"dr{int(dr)}_contmask.npy")
        if source is None:
            return None, None
    mask = load_continuum_mask(source) if isinstance(source, (str, Path)) else np.asarray(source, bool)
    cfg = PreprocessConfig.from_mask(mask, degree=2, continuum_weights="astronn")
    return cfg.to_dict(), (str(source) if isinstance(source, (str, Path)) else "array")


# ------------------------------------------------------------------------------------------
# normalisation, labels, the model


def _norm_arrays(af: AstroNNFolder, what: str, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """astroNN's stored ``<what>_mean``/``<what>_std`` for tensor ``key``, broadcast to (n,)."""
    p = af.parameters
    mode = p.get(f"{what}_norm_mode")
    if isinstance(mode, dict):
        mode = mode.get(key)
    if str(mode) == "3s":
        raise ModelFormatError(
            f"{af.folder}: {what}_norm_mode '3s' (a sigmoid, not a scaling) is not supported"
        )
    out = []
    for stat in ("mean", "std"):
        value = p.get(f"{what}_{stat}")
        if isinstance(value, dict):
            value = value.get(key)
        if value is None:
            raise ModelFormatError(f"{af.folder}: {what}_{stat} for {key!r} is missing from the JSON")
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size not in (1, n):
            raise ModelFormatError(f"{af.folder}: {what}_{stat} has {arr.size} values for {n} {what} entries")
        out.append(np.broadcast_to(arr, (n,)).copy())
    if not (np.isfinite(out[0]).all() and np.isfinite(out[1]).all() and (out[1] > 0).all()):
        raise ModelFormatError(f"{af.folder}: {what}_mean/{what}_std must be finite with std > 0")
    return out[0], out[1]


def from_astronn(
    folder: str | Path,
    *,
    continuum_mask: Any = None,
    continuum_dr: int = 17,
    element_windows: str | Path | None = None,
    label_names: Sequence[str] | None = None,
    label_units: Sequence[str] | None = None,
) -> Any:
    """An astroNN model folder as a starlabels :class:`~starlabels.models.folder.TrainedModel`.

    Parameters
    ----------
    folder:
        astroNN folder with ``astroNN_model_parameter.json`` and ``model_weights.h5``
        (``ApogeeBCNN`` or ``ApogeeBCNNCensored``).
    continuum_mask:
        (7514,) bool array or ``.npy``/``.npz`` file of the continuum pixels astroNN's
        ``apogee_continuum`` used; default astroNN's ``dr{continuum_dr}_contmask.npy`` from an
        installed astroNN. Without any, the model has no preprocessing (``preprocessed=True``
        input only) and a warning says so.
    element_windows:
        Censored network only: astroNN's ``aspcap_l31c_masks.npy`` or an ``.npz`` with
        ``windows`` (E, 7514) and ``elements`` (default: from an installed astroNN).
    label_names, label_units:
        Override the names made from astroNN's ``targetname`` (:func:`astronn_label_name`).

    ``starlabels.predict(model, flux, preprocessed=True)`` on astroNN's continuum-normalised
    (N, 7514) input then gives astroNN's ``model.test(flux)`` (dropout off: ``uncertainty=None``);
    raw apStar input is normalised as ``apogee_continuum`` does. Raises
    :class:`~starlabels.errors.ModelFormatError` for another astroNN model class (naming it) or weights
    that do not fit (naming the layer), :class:`~starlabels.errors.InputFileError` for missing files.
    """
    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.models.folder import TrainedModel

    af = read_folder(folder)
    cls = af.model_class
    if cls not in SUPPORTED:
        raise ModelFormatError(
            f"{af.folder}: astroNN model class {cls!r} is not supported; starlabels imports "
            f"{', '.join(SUPPORTED)}"
        )
    p = af.parameters
    if p.get("task", "regression") != "regression":
        raise ModelFormatError(f"{af.folder}: task {p.get('task')!r} is not supported (regression only)")
    if p.get("last_layer_activation", "linear") not in ("linear", None):
        raise ModelFormatError(
            f"{af.folder}: last_layer_activation {p['last_layer_activation']!r} is not "
            "supported (linear only)"
        )
    n_pixels = n_pixels_of(af)
    trunk = read_trunk(af.graph)
    if len(trunk["rates"]) != 1:
        raise ModelFormatError(f"{af.graph.path}: MCDropout layers have different rates {trunk['rates']}")
    dropout = trunk["rates"].pop()
    if p.get("dropout_rate") is not None and abs(float(p["dropout_rate"]) - dropout) > 1e-12:
        raise ModelFormatError(
            f"{af.folder}: dropout_rate {p['dropout_rate']} in the JSON but the MCDropout "
            f"layers of the HDF5 have rate {dropout}"
        )
    if cls == "ApogeeBCNN":
        net = build_bcnn(af, trunk, dropout, n_pixels)
    else:
        source: Any = element_windows
        if source is None:
            source = _astronn_data_file("aspcap_l31c_masks.npy")
            if source is None:
                raise ModelFormatError(
                    f"{af.folder}: ApogeeBCNNCensored reads the ASPCAP DR14 element windows, which "
                    "astroNN keeps in its package, not in the model folder; pass element_windows=PATH "
                    "(astroNN's aspcap_l31c_masks.npy or an .npz with 'windows' and 'elements')"
                )
        net = build_censored(af, trunk, dropout, n_pixels, load_astronn_windows(source), source)
    net.eval()
    n = net.n_labels
    in_mean, in_std = _norm_arrays(af, "input", "input", n_pixels)
    lab_mean, lab_std = _norm_arrays(af, "labels", "output", n)
    if label_names is None:
        target = [str(t) for t in p.get("targetname") or []]
        if len(target) != n:
            warnings.warn(
                f"{af.folder}: targetname has {len(target)} names for {n} outputs; the labels are "
                "called LABEL_1… (pass label_names=…)",
                UserWarning,
                stacklevel=2,
            )
            mapped = [(f"LABEL_{i + 1}", "") for i in range(n)]
        else:
            mapped = [astronn_label_name(t) for t in target]
        label_names = [m[0] for m in mapped]
        label_units = label_units if label_units is not None else [m[1] for m in mapped]
    if len(label_names) != n:
        raise ModelFormatError(f"{af.folder}: {len(label_names)} label names for {n} network outputs")
    preprocessing, mask_source = None, None
    if n_pixels == ASTRONN_N_PIXELS:
        preprocessing, mask_source = _continuum_preprocessing(continuum_mask, continuum_dr)
    elif continuum_mask is not None:
        raise ModelFormatError(
            f"{af.folder}: a continuum_mask was given but the network takes {n_pixels} pixels, not the "
            f"{ASTRONN_N_PIXELS} of astroNN's continuum-normalised APOGEE spectra"
        )
    if preprocessing is None:
        warnings.warn(
            f"{af.folder}: no continuum mask (none given, no astroNN installation to take "
            f"dr{continuum_dr}_contmask.npy from, or not a {ASTRONN_N_PIXELS}-pixel network): the "
            "model takes only preprocessed=True input (pass continuum_mask=… for raw apStar spectra)",
            UserWarning,
            stacklevel=2,
        )
    mode = "centred" if np.all(in_std == 1.0) else "standardised"
    provenance = {
        "imported_from": {
            "astronn_folder": str(af.folder.resolve()),
            "astronn_class": cls,
            "keras_version": af.keras_version,
            "continuum_mask": mask_source,
            "continuum_dr": int(continuum_dr),
            **{
                k: p.get(k)
                for k in (
                    "targetname",
                    "input_norm_mode",
                    "labels_norm_mode",
                    "dropout_rate",
                    "l2",
                    "maxnorm",
                    "inv_tau",
                    "length_scale",
                    "batch_size",
                )
            },
        },
    }
    return TrainedModel(
        network=net,
        label_names=label_names,
        label_units=label_units,
        label_scaler=LabelScaler(lab_mean, lab_std, names=label_names),
        spectrum_scaler=SpectrumScaler(mode, in_mean, in_std),
        preprocessing=preprocessing,
        training=provenance,
    )


@torch.no_grad()
def astronn_predict(
    model: Any, flux: Any, n_samples: int = 100, *, seed: int | None = None, batch_size: int = 1024
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """astroNN's ``model.test(flux)`` with its own MC-dropout aggregation, on an imported model.

    ``flux``: (N, P) preprocessed spectra (astroNN's continuum-normalised input). ``n_samples``
    passes with dropout on; returns ``(mean, {"total", "model", "predictive"})``, each (N, L), in
    physical units: the mean of the passes, σ_model = their population standard deviation,
    σ_predictive = sqrt(exp(mean of the passes' log-variances)) · label std (astroNN's rule; the
    ``"aleatoric"`` part of :func:`starlabels.predict` is the mean of exp(log-variance) instead,
    a little larger), σ_total = sqrt(σ_model² + σ_predictive²).
    """
    from starlabels.models.layers import mc_dropout

    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    x = np.atleast_2d(np.asarray(flux, dtype=np.float32))
    net = model.network
    device = model.device
    std = torch.as_tensor(model.label_scaler.std, dtype=torch.float64, device=device)
    mu = torch.as_tensor(model.label_scaler.mean, dtype=torch.float64, device=device)
    rows = max(1, int(batch_size) // int(n_samples))
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("mean", "model", "predictive")}
    # dropout draws from torch's global generators: with a seed they are restored afterwards
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked, enabled=seed is not None), mc_dropout(net):
        if seed is not None:
            torch.manual_seed(int(seed))
        for start in range(0, x.shape[0], rows):
            xb = model.network_input(x[start : start + rows])
            b = xb.shape[0]
            m, lv = net(xb.repeat_interleave(int(n_samples), dim=0))
            m = m.double().reshape(b, int(n_samples), -1)
            lv = lv.double().reshape(b, int(n_samples), -1)
            out["mean"].append((m.mean(dim=1) * std + mu).cpu())
            out["model"].append((m.var(dim=1, unbiased=False) * std**2).cpu())
            out["predictive"].append((torch.exp(lv.mean(dim=1)) * std**2).cpu())
    mean, var_model, var_pred = (torch.cat(out[k]).numpy() for k in ("mean", "model", "predictive"))
    return mean, {
        "total": np.sqrt(var_model + var_pred),
        "model": np.sqrt(var_model),
        "predictive": np.sqrt(var_pred),
    }
