"""starlabels: stellar labels with calibrated uncertainties from high-resolution spectra.

Public API (imported lazily so ``import starlabels`` stays fast):

- :func:`starlabels.load_model` — restore a trained model folder.
- :func:`starlabels.predict` — labels and uncertainties for spectra (networks, The Cannon, Payne fits);
  :class:`starlabels.PredictOptions` — its less common settings (calibration, flag thresholds, …).
- :class:`starlabels.CannonModel` — The Cannon (Ness et al. 2015; Casey et al. 2016), native in torch.
- :func:`starlabels.payne_model` — a Payne fitter around a Payne-format emulator.
- :func:`starlabels.tune_process` — opt-in process tuning (glibc allocator) for scripts that own
  their process; the ``starlabels`` CLI applies it, the library never does.
- subpackages :mod:`starlabels.io`, :mod:`starlabels.preprocess`, :mod:`starlabels.labels`,
  :mod:`starlabels.data`, :mod:`starlabels.models`, :mod:`starlabels.losses`,
  :mod:`starlabels.training`, :mod:`starlabels.inference`, :mod:`starlabels.evaluation`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "starlabels.models.folder",
    "predict": "starlabels.inference.predict",
    "PredictOptions": "starlabels.inference.predict_options",
    "CannonModel": "starlabels.models.cannon",
    "payne_model": "starlabels.models.payne_fit",
    "tune_process": "starlabels.process",
}
_SUBPACKAGES = {
    "io", "preprocess", "labels", "data", "models", "losses", "training", "inference",
    "evaluation", "cli",
}

__all__ = ["CannonModel", "PredictOptions", "__version__", "load_model", "payne_model", "predict",
           "tune_process", *sorted(_SUBPACKAGES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"starlabels.{name}")
    raise AttributeError(f"module 'starlabels' has no attribute {name!r}")
