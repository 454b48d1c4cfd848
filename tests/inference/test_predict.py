"""starlabels.predict: the public API, preprocessing, bad input, flags, calibration switch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import starlabels
from starlabels.errors import InputDataError, ModelFormatError, StarlabelsError
from starlabels.inference import flags as flag_bits
from starlabels.inference.inference_model import resolve
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prediction import Prediction


def test_public_predict_shapes_and_parts(raw_model_folder, spectra):
    flux, error, bitmask = spectra(4)
    expected_parts = {
        None: {"aleatoric"}, "mc_dropout": {"epistemic", "aleatoric"},
        "noise": {"noise", "aleatoric"}, "delta": {"delta", "aleatoric"},
    }
    model = starlabels.load_model(raw_model_folder)
    for method, parts in expected_parts.items():
        p = starlabels.predict(model, flux, error, uncertainty=method, n_samples=4, bitmask=bitmask, seed=0)
        assert isinstance(p, Prediction)
        assert p.mean.shape == p.std.shape == (4, 3)
        assert p.label_names == ["TEFF", "LOGG", "FE_H"]
        assert set(p.variance_parts) == parts
        assert p.flags.shape == (4,) and p.flags.dtype == np.int32
        assert np.isfinite(p.mean).all() and (p.std > 0).all()
        # total variance is the sum of the parts (astroNN eq. 3 for MC dropout)
        np.testing.assert_allclose(p.std**2, sum(p.variance_parts.values()), rtol=1e-10)
        assert (p.flags & flag_bits.bit("UNCALIBRATED")).all()  # this model has no calibration yet
    # the folder path gives the same numbers as the loaded model
    a = starlabels.predict(raw_model_folder, flux, error, uncertainty="delta")
    b = starlabels.predict(model, flux, error, uncertainty="delta")
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)


def test_model_preprocessing_is_applied_automatically(raw_model_folder, spectra):
    flux, error, bitmask = spectra(4, seed=3)
    bitmask[:, 100:140] = 1  # BADPIX: rejected and repaired by the raw preprocessing
    model = starlabels.load_model(raw_model_folder)
    x, xe = model.preprocess_config().apply(flux, error, bitmask)
    raw = starlabels.predict(model, flux, error, bitmask=bitmask, uncertainty="delta")
    pre = starlabels.predict(model, x, xe, preprocessed=True, uncertainty="delta")
    np.testing.assert_allclose(raw.mean, pre.mean, rtol=1e-6)
    np.testing.assert_allclose(raw.std, pre.std, rtol=1e-5)
    # and it matches the TrainedModel's own deterministic pass
    mean, sigma = model.predict_preprocessed(x)
    np.testing.assert_allclose(raw.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(raw.variance_parts["aleatoric"]), sigma, rtol=1e-5)
    np.testing.assert_allclose(raw.masked_fraction, 40 / 8575)


def test_wrong_grid_length_is_a_clear_error(make_model, raw_model_folder, spectra):
    flux, error, _ = spectra(2)
    with pytest.raises(InputDataError, match=r"input grid .apstar. \(8575 px"):
        starlabels.predict(raw_model_folder, flux[:, :7514], error[:, :7514])
    small = make_model("bcnn", 256)
    with pytest.raises(InputDataError, match="pass preprocessed=True"):
        starlabels.predict(small, np.ones((2, 256)))
    with pytest.raises(InputDataError, match="network takes 256"):
        starlabels.predict(small, np.ones((2, 300)), preprocessed=True)
    with pytest.raises(InputDataError, match="error shape"):
        starlabels.predict(raw_model_folder, flux, error[:1])
    with pytest.raises(InputDataError, match="uncertainty must be one of"):
        starlabels.predict(raw_model_folder, flux, error, uncertainty="bootstrap")


def test_nan_only_spectrum_keeps_its_row_flagged_with_nan_values(raw_model_folder, spectra):
    flux, error, bitmask = spectra(5, seed=1)
    flux[2] = np.nan
    error[4] = np.inf  # no usable error anywhere: also invalid
    p = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask, uncertainty="noise",
                           n_samples=10, seed=0)
    assert p.mean.shape == (5, 3)
    for i in (2, 4):
        assert np.isnan(p.mean[i]).all() and np.isnan(p.std[i]).all()
        assert all(np.isnan(v[i]).all() for v in p.variance_parts.values())
        assert p.flags[i] & flag_bits.bit("INVALID_SPECTRUM")
    good = [0, 1, 3]
    assert not (p.flags[good] & flag_bits.bit("INVALID_SPECTRUM")).any()
    assert np.isfinite(p.mean[good]).all()
    # the valid rows are exactly what they are without the invalid ones around
    alone = starlabels.predict(raw_model_folder, flux[good], error[good], uncertainty="delta")
    with_bad = starlabels.predict(raw_model_folder, flux, error, uncertainty="delta")
    np.testing.assert_array_equal(with_bad.mean[good], alone.mean)


def test_model_folder_without_config_is_a_model_format_error(tmp_path, raw_model_folder, spectra):
    flux, error, _ = spectra(1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "weights.safetensors").write_bytes((raw_model_folder / "weights.safetensors").read_bytes())
    with pytest.raises(ModelFormatError, match=r"config\.json"):
        starlabels.predict(broken, flux, error)
    with pytest.raises(ModelFormatError, match="does not exist"):
        starlabels.predict(tmp_path / "nowhere", flux, error)


def test_methods_that_need_errors_or_dropout_say_so(make_model):
    m = make_model("bcnn", 256)
    with pytest.raises(InputDataError, match="needs per-pixel errors"):
        starlabels.predict(m, np.ones((2, 256)), preprocessed=True, uncertainty="delta")
    no_dropout = make_model("apogee_net", 256, dropout=0.0)
    with pytest.raises(StarlabelsError, match="dropout"):
        starlabels.predict(no_dropout, np.ones((2, 256)), preprocessed=True, uncertainty="mc_dropout")
    # no variance head and no method: σ is NaN and flagged, never a made-up number
    p = starlabels.predict(no_dropout, np.ones((2, 256)), preprocessed=True)
    assert np.isnan(p.std).all() and (p.flags & flag_bits.bit("NO_UNCERTAINTY")).all()


def test_seeded_stochastic_methods_are_reproducible_and_chunking_does_not_change_results(make_model):
    m = make_model("bcnn", 256, dropout=0.3)
    rng = np.random.default_rng(0)
    x = 1 + 0.1 * rng.normal(size=(9, 256))
    e = np.full_like(x, 0.02)
    for method in ("mc_dropout", "noise"):
        a = starlabels.predict(m, x, e, preprocessed=True, uncertainty=method, n_samples=16, seed=4)
        b = starlabels.predict(m, x, e, preprocessed=True, uncertainty=method, n_samples=16, seed=4)
        c = starlabels.predict(m, x, e, preprocessed=True, uncertainty=method, n_samples=16, seed=5)
        np.testing.assert_array_equal(a.std, b.std)
        assert not np.array_equal(a.std, c.std)
    whole = starlabels.predict(m, x, e, preprocessed=True, uncertainty="delta")
    chunked = starlabels.predict(m, x, e, preprocessed=True, uncertainty="delta", batch_size=8,
                                 options=PredictOptions(chunk_size=4))
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked.std, whole.std, rtol=1e-5)


def test_calibration_is_applied_by_default_and_can_be_switched_off(make_model):
    m = make_model("bcnn", 256)
    x = 1 + 0.1 * np.random.default_rng(1).normal(size=(4, 256))
    e = np.full_like(x, 0.02)
    raw = starlabels.predict(m, x, e, preprocessed=True, uncertainty="delta")
    m.calibration = {"TEFF": 2.0, "LOGG": 0.5, "FE_H": 1.0}  # a bare {label: scale}
    cal = starlabels.predict(m, x, e, preprocessed=True, uncertainty="delta")
    off = starlabels.predict(m, x, e, preprocessed=True, uncertainty="delta",
                            options=PredictOptions(calibrated=False))
    np.testing.assert_allclose(cal.std, raw.std * [2.0, 0.5, 1.0], rtol=1e-12)
    np.testing.assert_allclose(cal.std**2, sum(cal.variance_parts.values()), rtol=1e-10)
    np.testing.assert_array_equal(off.std, raw.std)
    assert cal.calibrated and not off.calibrated
    uncalibrated = flag_bits.bit("UNCALIBRATED")
    assert not (cal.flags & uncalibrated).any() and (off.flags & uncalibrated).all()


def test_snr_masking_and_range_flags(make_model, spectra, raw_model_folder):
    flux, error, bitmask = spectra(3, snr=100)
    error[1] *= 20  # SNR 5
    bitmask[2, :3000] = 1  # 35 % masked
    p = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask)
    np.testing.assert_allclose(p.snr[0], 100, rtol=0.05)
    assert [bool(v & flag_bits.bit("LOW_SNR")) for v in p.flags] == [False, True, False]
    assert [bool(v & flag_bits.bit("MANY_MASKED_PIXELS")) for v in p.flags] == [False, False, True]
    # header SNR (e.g. from apStar files) wins where given
    q = starlabels.predict(raw_model_folder, flux, error, snr=[10.0, np.nan, 200.0])
    assert [bool(v & flag_bits.bit("LOW_SNR")) for v in q.flags] == [True, True, False]
    # the training range recorded in the provenance: a range that excludes every prediction
    m = make_model("bcnn", 256, training={"label_range": {"min": [9000, 9, 9], "max": [9999, 10, 10]}})
    r = starlabels.predict(m, np.ones((2, 256)), preprocessed=True)
    assert (r.flags & flag_bits.bit("LABEL_OUT_OF_RANGE")).all()
    m2 = make_model("bcnn", 256)  # fallback: label scaler mean ± 4 std
    lo, hi = resolve(m2).label_range
    np.testing.assert_allclose(lo, [3000, -1, -1.2])
    np.testing.assert_allclose(hi, [7000, 7, 1.2])


def test_prediction_variance_parts_as_sigma_and_label_lookup(make_model):
    m = make_model("bcnn", 256)
    p = starlabels.predict(
        m, np.ones((2, 256)), np.full((2, 256), 0.01), preprocessed=True, uncertainty="delta"
    )
    np.testing.assert_allclose(p.sigma_parts()["delta"], np.sqrt(p.variance_parts["delta"]))
    mean, std = p.label("LOGG")
    np.testing.assert_array_equal(mean, p.mean[:, 1])
    np.testing.assert_array_equal(std, p.std[:, 1])
    with pytest.raises(KeyError, match="TEFF"):
        p.label("VMICRO")
    json.dumps({k: v.tolist() for k, v in p.variance_parts.items()})  # plain arrays


def test_predict_options_reach_predict_and_bad_options_are_clear_errors(make_model):
    """The PredictOptions fields reach predict (a flag threshold, the calibration switch); a former
    keyword of predict is a TypeError pointing at PredictOptions, as are other bad options."""
    m = make_model("bcnn", 256)
    x = 1 + 0.1 * np.random.default_rng(2).normal(size=(7, 256))
    e = np.full_like(x, 0.02)
    m.calibration = {"TEFF": 2.0, "LOGG": 0.5, "FE_H": 1.0}
    strict = starlabels.predict(m, x, e, preprocessed=True, uncertainty="noise", n_samples=8, seed=3,
                                options=PredictOptions(calibrated=False, snr_min=1e9))
    default = starlabels.predict(m, x, e, preprocessed=True, uncertainty="noise", n_samples=8, seed=3)
    assert (strict.flags & flag_bits.bit("LOW_SNR")).all()  # SNR 50 < 1e9
    assert not (default.flags & flag_bits.bit("LOW_SNR")).any()
    np.testing.assert_array_equal(strict.mean, default.mean)
    np.testing.assert_allclose(default.std, strict.std * [2.0, 0.5, 1.0], rtol=1e-12)
    assert default.calibrated and not strict.calibrated
    assert starlabels.PredictOptions is PredictOptions
    with pytest.raises(TypeError, match=r"calibrated: pass options=PredictOptions\(calibrated=\.\.\.\)"):
        starlabels.predict(m, x, e, preprocessed=True, calibrated=False)
    with pytest.raises(TypeError, match="chunksize"):
        starlabels.predict(m, x, e, preprocessed=True, chunksize=3)
    with pytest.raises(TypeError, match="PredictOptions"):
        starlabels.predict(m, x, e, preprocessed=True, options={"calibrated": False})
    with pytest.raises(InputDataError, match="error_cap"):
        PredictOptions(error_cap="none")
    with pytest.raises(AttributeError):
        PredictOptions().calibrated = False  # frozen: settings never change under a running call


def _prefetch_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "starlabels-prefetch"]


def test_chunks_are_prepared_ahead_and_errors_stop_the_thread(make_model, monkeypatch):
    """Chunk k+1 is prepared in a thread while chunk k runs: the results equal a one-chunk run, an
    error in a later chunk's preparation or in the network surfaces from predict, and no prefetch
    thread is left behind either way."""
    from starlabels.inference import predict as predict_module
    from starlabels.inference import prepared_spectra

    m = make_model("bcnn", 256)
    x = 1 + 0.1 * np.random.default_rng(3).normal(size=(10, 256))
    e = np.full_like(x, 0.02)
    x[4] = np.nan  # an invalid row inside the second chunk
    whole = starlabels.predict(m, x, e, preprocessed=True, uncertainty=None)
    chunked = starlabels.predict(m, x, e, preprocessed=True, uncertainty=None,
                                 options=PredictOptions(chunk_size=3))
    np.testing.assert_array_equal(chunked.flags, whole.flags)
    np.testing.assert_array_equal(chunked.snr, whole.snr)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-6, atol=1e-6)  # batch composition
    assert np.isnan(chunked.mean[4]).all()
    assert not _prefetch_threads()

    real, calls = prepared_spectra.prepare_chunk, []

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("chunk 2 cannot be prepared")
        return real(*args, **kwargs)

    monkeypatch.setattr(prepared_spectra, "prepare_chunk", failing_second)
    with pytest.raises(RuntimeError, match="chunk 2"):
        starlabels.predict(m, x, e, preprocessed=True, uncertainty=None, options=PredictOptions(chunk_size=3))
    assert not _prefetch_threads()
    monkeypatch.setattr(prepared_spectra, "prepare_chunk", real)

    def failing_network(*args, **kwargs):
        raise RuntimeError("network failed")

    monkeypatch.setattr(predict_module, "_run", failing_network)
    try:
        starlabels.predict(m, x, e, preprocessed=True, uncertainty=None, options=PredictOptions(chunk_size=3))
    except RuntimeError as exc:  # checked while the traceback (and predict's frame) is still alive
        assert "network failed" in str(exc)
        assert not _prefetch_threads()
    else:
        pytest.fail("the network's error did not reach the caller")
