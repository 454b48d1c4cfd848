"""LabelScaler and SpectrumScaler: fitting with missing values, exact inverses, serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from starlabels.constants import MISSING
from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.errors import InputDataError

M = MISSING
LABELS = np.array([[1.0, M], [3.0, 10.0], [np.nan, 20.0], [5.0, 30.0]])


def test_label_scaler_fit_ignores_missing():
    sc = LabelScaler(names=["TEFF", "LOGG"]).fit(LABELS)
    np.testing.assert_allclose(sc.mean, [3.0, 20.0], rtol=1e-15)
    # population std of {1, 3, 5} and {10, 20, 30}
    np.testing.assert_allclose(sc.std, [math.sqrt(8 / 3), math.sqrt(200 / 3)], rtol=1e-15)


def test_label_scaler_transform_keeps_missing_and_inverts_exactly():
    sc = LabelScaler().fit(LABELS)
    z = sc.transform(LABELS)
    assert z[0, 1] == M and z[2, 0] == M  # NaN becomes MISSING too
    assert z[1, 0] == 0.0 and z[3, 1] == pytest.approx(10 / math.sqrt(200 / 3))
    back = sc.inverse_transform(z)
    present = np.isfinite(LABELS) & (LABELS != M)
    np.testing.assert_allclose(back[present], LABELS[present], rtol=1e-15, atol=0)
    assert (back[~present] == M).all()
    rng = np.random.default_rng(0)
    x = rng.normal(4500, 600, size=(100, 2))
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(x)), x, rtol=1e-15, atol=0)


def test_label_scaler_errors_and_std_scaling():
    sc = LabelScaler(mean=[3.0, 20.0], std=[2.0, 10.0])
    err = np.array([[0.5, M], [np.nan, 1.0]])
    z = sc.transform_errors(err)
    np.testing.assert_array_equal(z, [[0.25, M], [M, 0.1]])
    np.testing.assert_array_equal(sc.inverse_transform_std(np.array([0.25, 0.1])), [0.5, 1.0])


def test_label_scaler_torch_dtype_device_and_1d():
    sc = LabelScaler(mean=[3.0, 20.0], std=[2.0, 10.0])
    t = torch.tensor([[5.0, M], [1.0, 30.0]], dtype=torch.float32)
    z = sc.transform(t)
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
    assert torch.equal(z, torch.tensor([[1.0, M], [-1.0, 1.0]]))
    assert torch.equal(sc.inverse_transform(z), t)
    np.testing.assert_array_equal(sc.transform(np.array([5.0, 30.0])), [1.0, 1.0])
    with pytest.raises(InputDataError, match=r"\(N, 2\)"):
        sc.transform(np.zeros((3, 3)))


def test_label_scaler_dict_round_trip_and_errors():
    sc = LabelScaler(names=["A", "B"]).fit(LABELS)
    d = json.loads(json.dumps(sc.to_dict()))
    again = LabelScaler.from_dict(d)
    assert np.array_equal(again.mean, sc.mean) and np.array_equal(again.std, sc.std)
    assert again.names == ["A", "B"]
    with pytest.raises(InputDataError, match="no present value"):
        LabelScaler(names=["A", "B"]).fit(np.array([[1.0, M], [2.0, np.nan]]))
    with pytest.raises(InputDataError, match="not fitted"):
        LabelScaler().transform(LABELS)
    with pytest.raises(InputDataError, match="std"):
        LabelScaler(mean=[0.0], std=[0.0])
    constant = LabelScaler().fit(np.array([[7.0], [7.0]]))
    assert constant.std[0] == 1.0 and constant.transform(np.array([[7.0]]))[0, 0] == 0.0


def test_spectrum_scaler_centered_excludes_rejected_pixels():
    flux = np.array([[1.0, 0.5, 1.0], [0.8, 0.7, 1.0], [0.9, 5.0, np.nan]], dtype=np.float32)
    error = np.array([[0.01, 0.01, 0.01], [0.01, 0.01, 0.01], [0.01, 1e10, 1e10]], dtype=np.float32)
    sc = SpectrumScaler("centered").fit(flux, error)
    # pixel 1 ignores the rejected 5.0; pixel 2 ignores the NaN
    torch.testing.assert_close(sc.mean, torch.tensor([0.9, 0.6, 1.0]), rtol=1e-6, atol=0)
    assert torch.equal(sc.std, torch.ones(3))
    without = SpectrumScaler("centered").fit(flux)
    assert without.mean[1] == pytest.approx(2.0667, abs=1e-4)  # (0.5 + 0.7 + 5.0)/3
    # a pixel rejected everywhere falls back to the mean of its (repaired) values
    all_bad = SpectrumScaler("centered").fit(flux[:, :1], np.full((3, 1), 1e10))
    assert all_bad.mean[0] == pytest.approx(0.9)


def test_finalize_is_the_deprecated_spelling_of_finalise():
    flux = np.random.default_rng(2).normal(1, 0.1, size=(30, 8)).astype(np.float32)
    new = SpectrumScaler("standardised").partial_fit(flux[:10]).partial_fit(flux[10:]).finalise()
    with pytest.warns(DeprecationWarning, match="finalise"):
        old = SpectrumScaler("standardised").partial_fit(flux[:10]).partial_fit(flux[10:]).finalize()
    torch.testing.assert_close(old.mean, new.mean, rtol=0, atol=0)
    torch.testing.assert_close(old.std, new.std, rtol=0, atol=0)
    np.testing.assert_allclose(new.std.numpy(), flux.std(axis=0), rtol=1e-5)


def test_spectrum_scaler_transform_inverse_and_chunks():
    rng = np.random.default_rng(1)
    flux = rng.normal(1, 0.1, size=(50, 16)).astype(np.float32)
    sc = SpectrumScaler("centered").fit(flux)
    chunked = SpectrumScaler("centered").partial_fit(flux[:20]).partial_fit(flux[20:]).finalise()
    torch.testing.assert_close(chunked.mean, sc.mean, rtol=1e-6, atol=0)
    x = sc.transform(flux)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(sc.inverse_transform(x), flux, rtol=0, atol=1e-6)
    t = sc.transform(torch.from_numpy(flux))
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), x)
    with pytest.raises(InputDataError, match="16"):
        sc.transform(flux[:, :10])


def test_spectrum_scaler_none_is_identity_and_state_round_trip():
    flux = np.arange(6, dtype=np.float32).reshape(2, 3)
    none = SpectrumScaler("none").fit(flux)
    assert none.transform(flux) is flux and none.state_dict() == {}
    assert SpectrumScaler.from_state(none.to_dict(), {}).mode == "none"
    sc = SpectrumScaler("centered").fit(flux)
    state = sc.state_dict()
    assert set(state) == {"spectrum_scaler.mean", "spectrum_scaler.std"}
    again = SpectrumScaler.from_state(json.loads(json.dumps(sc.to_dict())), state)
    assert torch.equal(again.mean, sc.mean) and again.n_pixels == 3
    with pytest.raises(InputDataError, match="mode"):
        SpectrumScaler("standardise")
    with pytest.raises(InputDataError, match="not fitted"):
        SpectrumScaler("centered").transform(flux)


def test_standardised_scaler_matches_numpy_and_round_trips():
    rng = np.random.default_rng(5)
    flux = rng.normal(5.0, 3.0, (500, 7)).astype(np.float32)
    flux[:, 6] = 2.0  # no scatter: std 1, not a division by zero
    error = np.full_like(flux, 0.1)
    error[:50, 0] = 1e10  # rejected pixels are not counted
    flux[:50, 0] = 1e6
    a = SpectrumScaler("standardised").fit(flux[:200], error[:200])
    b = SpectrumScaler("standardised").partial_fit(flux[:120], error[:120]).partial_fit(
        flux[120:200], error[120:200]).finalise()  # chunked = one call
    np.testing.assert_allclose(a.std.numpy(), b.std.numpy(), rtol=1e-6)
    kept = flux[50:200, 0]
    np.testing.assert_allclose(a.mean.numpy()[0], kept.mean(), rtol=1e-5)
    np.testing.assert_allclose(a.std.numpy()[0], kept.std(), rtol=1e-4)
    np.testing.assert_allclose(a.std.numpy()[1:6], flux[:200, 1:6].std(axis=0), rtol=1e-4)
    assert a.std.numpy()[6] == 1.0
    x = a.transform(flux[200:])
    np.testing.assert_allclose(x[:, 3], (flux[200:, 3] - a.mean.numpy()[3]) / a.std.numpy()[3], rtol=1e-5)
    back = SpectrumScaler.from_state(a.to_dict(), a.state_dict())
    assert back.mode == "standardised"
    np.testing.assert_array_equal(back.transform(flux[200:]), x)
