"""Spectra prepared ahead of predict (``prepare_spectra``) give exactly the predictions of the raw arrays."""

from __future__ import annotations

import numpy as np
import pytest

import starlabels
from starlabels.errors import InputDataError
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prepared_spectra import PreparedSpectra, prepare_spectra


@pytest.fixture
def raw_input(spectra):
    flux, error, bitmask = spectra(9, seed=11)
    flux[2] = np.nan  # invalid: NaN labels, INVALID_SPECTRUM
    bitmask[5, :4000] |= 1  # partly masked
    return flux, error, bitmask


@pytest.mark.parametrize("method", ["mc_dropout", "noise", "delta"])
def test_prepared_spectra_predict_exactly_like_the_raw_arrays(raw_model_folder, raw_input, method):
    flux, error, bitmask = raw_input
    options = PredictOptions(chunk_size=4)  # three chunks, the last one short
    prepared = prepare_spectra(raw_model_folder, flux, error, bitmask=bitmask, options=options)
    assert isinstance(prepared, PreparedSpectra) and prepared.n == 9 and len(prepared.chunks) == 3
    assert [c[0] for c in prepared.chunks] == [slice(0, 4), slice(4, 8), slice(8, 9)]
    direct = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask, uncertainty=method,
                                n_samples=5, seed=4, options=options)
    ahead = starlabels.predict(raw_model_folder, prepared, uncertainty=method, n_samples=5, seed=4,
                               options=options)
    np.testing.assert_array_equal(ahead.mean, direct.mean)
    np.testing.assert_array_equal(ahead.std, direct.std)
    np.testing.assert_array_equal(ahead.flags, direct.flags)
    np.testing.assert_array_equal(ahead.snr, direct.snr)
    assert np.isnan(ahead.mean[2]).all()
    assert ahead.flags[2] & starlabels.inference.flags.bit("INVALID_SPECTRUM")


def test_prepared_spectra_come_alone_and_for_their_model(raw_model_folder, make_model, raw_input):
    flux, error, bitmask = raw_input
    prepared = prepare_spectra(raw_model_folder, flux, error, bitmask=bitmask)
    with pytest.raises(InputDataError, match="alone"):
        starlabels.predict(raw_model_folder, prepared, error)
    with pytest.raises(InputDataError, match="alone"):
        starlabels.predict(raw_model_folder, prepared, grid="apstar")
    other = make_model("bcnn", 256)  # a network on another input
    with pytest.raises(InputDataError, match="another model"):
        starlabels.predict(other, prepared)
