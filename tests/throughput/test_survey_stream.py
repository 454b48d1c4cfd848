"""Streaming survey simulation (issue 17): chunks identical to the all-at-once simulator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from starlabels.data.survey import GeneratorSource, SurveyConfig, SurveySimulator, default_population
from starlabels.data.survey_stream import simulate_chunks, simulate_to_hdf5
from starlabels.errors import InputDataError

FIELDS = ("flux", "error", "bitmask", "labels", "label_errors", "true_labels", "snr", "group",
          "apogee_id", "extinction_h")


@pytest.mark.parametrize("instrument", ["apogee", "boss"])
def test_chunks_are_bit_identical_to_simulate(instrument):
    cfg = SurveyConfig(n_stars=7, seed=5, population=default_population(instrument), missing_fraction=0.2)
    sim = SurveySimulator(GeneratorSource.default(0, instrument=instrument), cfg)
    full = sim.simulate()
    parts = list(simulate_chunks(sim, 3))
    assert [len(p) for p in parts] == [3, 3, 1]
    for name in FIELDS:
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(full, name))


def test_hdf5_written_in_chunks_equals_the_one_shot_file(tmp_path):
    cfg = SurveyConfig(n_stars=5, seed=2)
    sim = SurveySimulator(GeneratorSource.default(0), cfg)
    sim.simulate().write_hdf5(tmp_path / "once.h5")
    seen = []
    simulate_to_hdf5(sim, tmp_path / "chunks.h5", chunk_rows=2, progress=seen.append)
    assert seen == [2, 2, 1]
    with h5py.File(tmp_path / "once.h5") as a, h5py.File(tmp_path / "chunks.h5") as b:
        names: list[str] = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names
        for n in names:
            np.testing.assert_array_equal(a[n][()], b[n][()], err_msg=n)


def test_bad_chunk_size():
    sim = SurveySimulator(GeneratorSource.default(0), SurveyConfig(n_stars=2))
    with pytest.raises(InputDataError, match="chunk_rows"):
        next(simulate_chunks(sim, 0))
