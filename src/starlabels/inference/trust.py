"""The trust references a network gets at the end of training: its label coverage
(:mod:`starlabels.inference.label_coverage`) and its domain-shift estimator
(:mod:`starlabels.inference.domain_shift`), fitted by :func:`fit_trust`."""

from __future__ import annotations

from typing import Any

import numpy as np

from starlabels.inference.coverage import fit_coverage
from starlabels.inference.domain_shift import DomainShift
from starlabels.inference.label_coverage import fingerprint

__all__ = ["fit_trust"]


def fit_trust(model: Any, train_x: np.ndarray, train_error: np.ndarray | None, train_labels: np.ndarray,
              dev_x: np.ndarray, dev_error: np.ndarray | None, dev_labels: np.ndarray, *,
              seed: int = 0) -> tuple[Any, ...]:
    """Fit the label coverage and the domain shift of a trained network model on preprocessed
    network input (train (N, P), dev (M, P), normalised errors or None, labels (·, L) with MISSING
    where absent), attach both to the model (``coverage``, ``domain_shift``) and return them
    (the domain shift alone for a network without an ``embedding``). Called by the trainer at the
    end of training; the model folder's ``coverage.safetensors`` and ``domain_shift.safetensors``
    are written by their ``save``."""
    shift = DomainShift(seed=seed).fit(train_x, dev_x, train_error=train_error, dev_error=dev_error,
                                       network_fingerprint=fingerprint(model.network))
    model.domain_shift = shift
    if not hasattr(model.network, "embedding"):  # the coverage needs the network's embedding
        return (shift,)
    coverage = fit_coverage(model, train_x, train_error, train_labels, dev_x, dev_error, dev_labels,
                            preprocessed=True, seed=seed)
    return coverage, shift
