"""The photometric young-star network (APOGEE Net §2.4) and the labeler that applies it.

:class:`YSOPhotometryCNN` is the paper's small CNN: three (conv1d → SiLU → max-pool) blocks over
the feature axis, then two dense layers; it maps (N, F) standardised photometric inputs to (N, T)
standardised targets (log age, mass, A_V, log Teff, log g), returned as ``(mean, None)`` like every
starlabels network so the shared :class:`~starlabels.training.trainer.Trainer` trains it
(:func:`starlabels.training.yso.train_yso_network`).

:class:`YSOLabeler` is a trained network with its input/target scalers and detection limits:
:meth:`~YSOLabeler.predict` labels a table of (real or synthetic) photometry
(:func:`starlabels.labels.yso.observed_inputs` builds the inputs), :meth:`~YSOLabeler.save` writes
the folder atomically (:func:`starlabels.models.folder_io.write_model_folder`) and
:meth:`~YSOLabeler.load` reads it back. :func:`scatter_report` gives residual statistics on a
synthetic test population.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from starlabels.errors import ModelFormatError
from starlabels.labels.yso import TARGET_UNITS, observed_inputs
from starlabels.models.folder_io import read_config, read_weights, write_model_folder
from starlabels.statistics import sigma_mad

__all__ = ["LOG_INPUTS", "YSOLabeler", "YSOPhotometryCNN", "input_transform", "scatter_report"]

#: ``format`` of a YSO labeler folder's ``config.json``.
YSO_FORMAT = "starlabels-yso-labeler"

#: Inputs that enter the network as log10 (radius in Rsun, distance in pc): with log R and log L,
#: log Teff is linear in the inputs (Stefan-Boltzmann) and magnitudes are linear in log distance.
LOG_INPUTS: tuple[str, ...] = ("radius", "distance")


class YSOPhotometryCNN(nn.Module):
    """Three (conv1d -> SiLU -> max-pool) blocks over the feature axis, then two dense layers.

    Input (N, F) or (N, 1, F) standardised features; output ``(mean, None)`` with ``mean``
    (N, n_outputs) standardised targets (no variance head).
    """

    def __init__(self, n_inputs: int, n_outputs: int, channels: Sequence[int], kernel_size: int,
                 hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = 1, n_inputs
        for c_out in channels:
            layers += [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.SiLU(),
                       nn.MaxPool1d(2, ceil_mode=True)]
            c_in, length = c_out, math.ceil(length / 2)
        self.features = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, hidden), nn.SiLU(),
                                   nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.dense(self.features(x)), None


def input_transform(x: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """(N, F) raw inputs -> network inputs (float64): :data:`LOG_INPUTS` as log10 (NaN where not
    positive), everything else as given."""
    x = np.array(x, dtype=float, copy=True)
    for name in LOG_INPUTS:
        if name in features:
            j = list(features).index(name)
            with np.errstate(invalid="ignore", divide="ignore"):
                x[:, j] = np.log10(np.where(x[:, j] > 0, x[:, j], np.nan))
    return x


@dataclass
class YSOLabeler:
    """A trained YSO photometry network with its scalers; :meth:`predict` labels a table.

    ``x_mean``/``x_std`` (F,) standardise the transformed inputs (:func:`input_transform`),
    ``y_mean``/``y_std`` (T,) turn standardised outputs into physical targets; ``limits`` are the
    detection limits (mag) of the bands; ``arch`` the :class:`YSOPhotometryCNN` arguments.
    """

    model: Any
    features: list[str]
    targets: list[str]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    limits: dict[str, float]
    arch: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)

    def predict_array(
        self, x: np.ndarray, *, batch_size: int = 8192, device: str | None = None
    ) -> np.ndarray:
        """(N, T) targets in physical units from (N, F) raw inputs (NaN rows give NaN rows)."""
        from starlabels.utils import get_device

        dev = get_device(device)
        model = self.model.to(dev).eval()
        z = (input_transform(x, self.features) - self.x_mean) / self.x_std
        good = np.isfinite(z).all(axis=1)
        out = np.full((len(z), len(self.targets)), np.nan)
        zg = torch.as_tensor(z[good], dtype=torch.float32)
        preds = []
        with torch.no_grad():
            for i in range(0, len(zg), batch_size):
                preds.append(model(zg[i: i + batch_size].to(dev))[0].cpu().numpy())
        if preds:
            out[good] = np.concatenate(preds) * self.y_std + self.y_mean
        return out

    def predict(self, table: Any, *, batch_size: int = 8192, device: str | None = None):
        """Labels for a table of photometry (synthetic population or real stars, same columns).

        Returns an astropy Table: ``log_age`` (dex yr), ``mass`` (Msun), ``av`` (mag),
        ``log_teff``, ``teff`` (K), ``logg`` (dex); NaN for rows without G or distance.
        """
        from astropy.table import Table

        y = self.predict_array(observed_inputs(table, self.features, self.limits),
                               batch_size=batch_size, device=device)
        out = Table()
        for j, t in enumerate(self.targets):
            out[t] = y[:, j]
        if "log_teff" in self.targets:
            out["teff"] = 10.0 ** out["log_teff"]
            out["teff"].unit = "K"
        return out

    def config_dict(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return {
            "format": YSO_FORMAT, "format_version": 1,
            "features": self.features, "targets": self.targets,
            "target_units": {t: TARGET_UNITS.get(t, "") for t in self.targets},
            "x_mean": np.asarray(self.x_mean).tolist(), "x_std": np.asarray(self.x_std).tolist(),
            "y_mean": np.asarray(self.y_mean).tolist(), "y_std": np.asarray(self.y_std).tolist(),
            "limits": self.limits, "arch": self.arch, "training": self.training,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``folder`` atomically (a
        temporary folder beside it replaces it; extra files in an existing labeler folder are
        kept; a non-empty folder that is not a model folder is refused with ``FileExistsError``)."""
        return write_model_folder(folder, self.config_dict(), self.model.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> YSOLabeler:
        """Restore a labeler written by :meth:`save` (raises :class:`ModelFormatError`)."""
        cfg = read_config(folder)
        if cfg.get("format") != YSO_FORMAT or cfg.get("format_version") != 1:
            raise ModelFormatError(f"{Path(folder) / 'config.json'}: not a version-1 YSO labeler")
        model = YSOPhotometryCNN(**cfg["arch"])
        try:
            model.load_state_dict(read_weights(folder))
        except RuntimeError as exc:
            raise ModelFormatError(f"{folder}: weights do not fit its config.json network ({exc})") from None
        return cls(
            model=model.eval(), features=cfg["features"], targets=cfg["targets"],
            x_mean=np.array(cfg["x_mean"]), x_std=np.array(cfg["x_std"]),
            y_mean=np.array(cfg["y_mean"]), y_std=np.array(cfg["y_std"]),
            limits=cfg["limits"], arch=cfg["arch"], training=cfg.get("training", {}),
        )


def scatter_report(labeler: YSOLabeler, test: Any) -> dict[str, dict[str, float]]:
    """Residual statistics (prediction - truth) of ``labeler`` on a synthetic test population.

    For each target (and ``teff`` in K): ``bias`` (mean), ``std``, ``robust_std``
    (σ_MAD, :func:`starlabels.statistics.sigma_mad`), ``p68`` (half the 16-84 percentile width)
    and ``spread`` (std of the true values), all in the target's units; ``n`` rows used.
    """
    pred = labeler.predict(test)
    out: dict[str, dict[str, float]] = {}
    names = [*labeler.targets, *(["teff"] if "log_teff" in labeler.targets else [])]
    for t in names:
        p = np.asarray(pred[t], dtype=float)
        truth = np.asarray(test[t], dtype=float)
        ok = np.isfinite(p) & np.isfinite(truth)
        d = p[ok] - truth[ok]
        q16, q84 = np.percentile(d, [16, 84]) if len(d) else (np.nan, np.nan)
        out[t] = {
            "bias": float(np.mean(d)), "std": float(np.std(d)),
            "robust_std": float(sigma_mad(d, ignore_nan=False)),
            "p68": float(0.5 * (q84 - q16)), "spread": float(np.std(truth[ok])), "n": int(ok.sum()),
        }
    return out
