"""Simulated stars have no sky position: their files carry no RA/DEC, and every reader — the
spectrum readers, the catalog rows, ingest — gives NaN for it, as for any unknown position."""

import numpy as np
import pytest

from starlabels.data import survey
from starlabels.data.hdf5 import SpectraDataset
from starlabels.data.ingest import ingest_files
from starlabels.inference.catalog_inputs import _meta_row
from starlabels.io import read_spectra


@pytest.fixture(scope="module")
def simulated():
    cfg = survey.SurveyConfig(n_stars=2, seed=5)
    return survey.SurveySimulator(survey.GeneratorSource.default(), cfg).simulate()


@pytest.mark.parametrize("layout", ["apstar", "mwm_star"])
def test_simulated_files_give_nan_positions_everywhere(simulated, tmp_path, layout):
    folder = tmp_path / layout
    paths = simulated.write_apstar(folder) if layout == "apstar" else simulated.write_mwm_star(folder)
    assert len(paths) == 2
    for order, path in enumerate(paths):
        spectra = read_spectra(path)
        assert spectra
        for s in spectra:
            assert np.isnan(float(s.meta.get("RA", np.nan))), (path, s.meta.get("RA"))
            assert np.isnan(float(s.meta.get("DEC", np.nan))), (path, s.meta.get("DEC"))
            row = _meta_row(s.meta, str(path), order)  # a catalog row of this spectrum
            assert np.isnan(row["RA"]) and np.isnan(row["DEC"])
            assert np.isfinite(row["SNR"])  # the other header values still come through
    ingest_files(paths, tmp_path / f"{layout}.h5")
    ds = SpectraDataset(tmp_path / f"{layout}.h5")
    assert len(ds) == 2
    assert np.isnan(ds.meta("ra")).all() and np.isnan(ds.meta("dec")).all()
