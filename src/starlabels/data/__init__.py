"""Datasets: HDF5 spectra files, ingest of apStar files, splits, synthetic spectra.

Names are imported lazily from their modules on first use (``starlabels.data.SpectraDataset``),
so ``import starlabels.data`` stays cheap. To export a new name, add it to ``_LAZY``.
"""

from __future__ import annotations

from starlabels._lazy import lazy_exports

#: exported name -> module that defines it
_LAZY: dict[str, str] = {
    "DatasetWriter": "starlabels.data.hdf5_writer",
    "SpectraDataset": "starlabels.data.hdf5",
    "SpectraBatch": "starlabels.data.hdf5",
    "read_dataset_info": "starlabels.data.hdf5_format",
    "random_split": "starlabels.data.splits",
    "group_split": "starlabels.data.splits",
    "SyntheticGenerator": "starlabels.data.synthetic",
    "SyntheticSpectra": "starlabels.data.synthetic",
    "write_apstar_files": "starlabels.data.synthetic",
    "ingest_files": "starlabels.data.ingest",
    "write_label_catalog": "starlabels.data.synthetic",
    "PayneEmulator": "starlabels.data.emulator",
    "load_emulator": "starlabels.data.emulator",
    "SurveyConfig": "starlabels.data.survey",
    "SurveySimulator": "starlabels.data.survey",
    "SimulatedSurvey": "starlabels.data.survey",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
