"""Label networks and the trained-model folder.

Every network takes ``(N, 1, n_pixels)`` float32 and returns ``(mean, log_var)``, both
``(N, n_labels)`` in standardised label space (``log_var`` is ``None`` without a variance head), has
``.config()`` (JSON-serialisable kwargs that rebuild it), a class attribute ``name`` and
``apply_constraints()`` (called by the trainer after every optimiser step).

=================  ============================  ===============================================
name               class                         paper
=================  ============================  ===============================================
``apogee_net``     :class:`ApogeeNet`            Olney et al. 2020, Appendix B (no variance head)
``bcnn``           :class:`BayesianCNN`          Leung & Bovy 2019, astroNN ``ApogeeBCNN``
``bcnn_censored``  :class:`CensoredBayesianCNN`  Leung & Bovy 2019, ``ApogeeBCNNCensored`` (Fig. 6)
=================  ============================  ===============================================
"""

from __future__ import annotations

from typing import Any

from starlabels.models.apogee_net import ApogeeNet
from starlabels.models.bcnn import BayesianCNN
from starlabels.models.censored import CensoredBayesianCNN
from starlabels.models.layers import (
    LabelNetwork,
    MaxNorm,
    StopGrad,
    bypass_stopgrad,
    mc_dropout,
    n_parameters,
)

__all__ = [
    "ARCHITECTURES",
    "ApogeeNet",
    "BayesianCNN",
    "CensoredBayesianCNN",
    "LabelNetwork",
    "MaxNorm",
    "StopGrad",
    "TrainedModel",
    "build_network",
    "bypass_stopgrad",
    "from_astronn",
    "load_model",
    "mc_dropout",
    "n_parameters",
]

#: name → network class
ARCHITECTURES: dict[str, type[LabelNetwork]] = {
    cls.name: cls for cls in (ApogeeNet, BayesianCNN, CensoredBayesianCNN)
}


def build_network(name: str, **kwargs: Any) -> LabelNetwork:
    """Instantiate the network registered as ``name`` (case-insensitive, ``-`` = ``_``) with kwargs.

    Raises ``ValueError`` naming the known architectures for an unknown ``name``.
    """
    key = str(name).strip().lower().replace("-", "_")
    try:
        cls = ARCHITECTURES[key]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(**kwargs)


def __getattr__(name: str) -> Any:
    # the folder module pulls in safetensors and the scalers; import it on first use
    if name in ("TrainedModel", "load_model"):
        from starlabels.models import folder

        return getattr(folder, name)
    if name == "from_astronn":  # reads astroNN folders with h5py; imported on first use
        from starlabels.models.astronn_import import from_astronn

        return from_astronn
    raise AttributeError(f"module 'starlabels.models' has no attribute {name!r}")
