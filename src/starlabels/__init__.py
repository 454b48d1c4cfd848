"""starlabels: stellar labels with calibrated uncertainties from high-resolution spectra.

Public API (imported lazily so ``import starlabels`` stays fast):

- :func:`starlabels.load_model` — restore a trained model folder.
- :func:`starlabels.predict` — labels and uncertainties for spectra.
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
}
_SUBPACKAGES = {
    "io", "preprocess", "labels", "data", "models", "losses", "training", "inference",
    "evaluation", "cli",
}

__all__ = ["__version__", "load_model", "predict", *sorted(_SUBPACKAGES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"starlabels.{name}")
    raise AttributeError(f"module 'starlabels' has no attribute {name!r}")
