"""starlabels.inference: labels, uncertainties, calibration, flags and catalogs at survey scale.

- ``starlabels.predict`` (:func:`starlabels.inference.predict.predict`) → :class:`Prediction`;
  uncertainties ``"mc_dropout"``, ``"noise"``, ``"delta"`` (:mod:`.uncertainty`); its less common
  settings in :class:`PredictOptions`.
- :func:`calibrate` fits per-label σ scale factors on a dev set (:mod:`.calibration`).
- :data:`FLAG_BITS` — the ``FLAG`` bitmask (:mod:`.flags`).
- :func:`run_catalog` / :func:`read_catalog` — resumable FITS/CSV/Parquet catalogs from files,
  directories and HDF5 datasets (:mod:`.catalog`); :func:`run_distributed` the same on Dask
  (:mod:`.distributed`). Command line: ``starlabels predict``.

Names are imported on first use, so ``import starlabels.inference`` stays cheap.
"""

from __future__ import annotations

from starlabels._lazy import lazy_exports

# ``predict`` is not listed: it is the name of a submodule too; use ``starlabels.predict`` or
# ``from starlabels.inference.predict import predict``.
_NAMES = {
    "Prediction": "starlabels.inference.prediction",
    "PredictOptions": "starlabels.inference.predict_options",
    "calibrate": "starlabels.inference.calibration",
    "FLAG_BITS": "starlabels.inference.flags",
    "run_catalog": "starlabels.inference.catalog",
    "read_catalog": "starlabels.inference.catalog",
    "run_distributed": "starlabels.inference.distributed",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _NAMES)
