"""Training labels beyond the spectroscopic catalog (APOGEE Net §2.3-2.4, §4).

- :func:`mdwarf_labels` (:mod:`.mdwarf`): photometric Teff, log g, [Fe/H] for M dwarfs.
- :mod:`.yso`: synthetic PARSEC population of young stars (:func:`synthetic_population`) and the
  photometric inputs of the YSO network; :mod:`.yso_isochrones` reads and interpolates the PARSEC
  grid (:func:`load_isochrones`). The network and its labeler are in :mod:`starlabels.models.yso`,
  its training in :mod:`starlabels.training.yso` (layers above this one).
- :func:`assemble_labels` (:mod:`.assemble`): one training table from Payne/ASPCAP, M-dwarf and
  YSO labels with a ``group`` column.
- :mod:`.young`: the (Teff, log g) young-star polygon (:func:`in_young_polygon`) and the log g
  age bins (:func:`logg_age_bin`).

Names are imported lazily, so ``import starlabels.labels`` does not import torch.
"""

from __future__ import annotations

from starlabels._lazy import lazy_exports

_LAZY = {
    "mdwarf_labels": "starlabels.labels.mdwarf",
    "MDwarfFlag": "starlabels.labels.mdwarf",
    "synthetic_population": "starlabels.labels.yso",
    "load_isochrones": "starlabels.labels.yso_isochrones",
    "assemble_labels": "starlabels.labels.assemble",
    "in_young_polygon": "starlabels.labels.young",
    "logg_age_bin": "starlabels.labels.young",
    "YOUNG_POLYGON": "starlabels.labels.young",
    "LOGG_AGE_BIN_EDGES": "starlabels.labels.young",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
