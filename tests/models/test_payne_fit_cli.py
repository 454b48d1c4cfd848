"""``starlabels fit`` and the Payne model through the method-agnostic predict / catalog path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import starlabels
from starlabels.cli.main import cli
from starlabels.inference.catalog import read_catalog
from starlabels.io.apstar_writer import write_apstar
from starlabels.models.payne_fit import PayneModel

from .test_payne_fit import LABELS, continuum, tiny_emulator

#: the tiny emulator's 300 pixels placed at two runs of apStar columns
COLUMNS = np.r_[np.arange(1000, 1150), np.arange(1250, 1400)]


def apstar_wavelength() -> np.ndarray:
    """The apStar grid, log10 λ = 4.179 + 6e-6·i (SDSS data model)."""
    return 10.0 ** (4.179 + 6e-6 * np.arange(8575))


def apstar_model(**kwargs) -> PayneModel:
    kwargs.setdefault("rv_grid", np.arange(-10.0, 10.5, 2.0))
    return PayneModel(tiny_emulator(), LABELS, wavelength=apstar_wavelength()[COLUMNS],
                      pixel_index=COLUMNS, n_input_pixels=8575, n_starts=2, **kwargs)


def truth(model: PayneModel, n: int, seed: int) -> np.ndarray:
    """(n, 3) physical labels of ``spectra(model, n, seed)``."""
    lo, hi = model.emulator.label_range
    return (np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 3)) + 0.5) * (hi - lo) + lo


def spectra(model: PayneModel, n: int, seed: int):
    rng = np.random.default_rng(seed)
    sm = model.spectrum_model()
    theta = torch.as_tensor(np.c_[rng.uniform(-0.3, 0.3, (n, 3)), rng.uniform(-5, 5, n),
                                  continuum(n, model, rng)])
    clean = sm(theta, jacobian=False)[0].numpy()
    flux = np.ones((n, 8575))
    error = np.full((n, 8575), 0.01)
    error[:, COLUMNS] = np.abs(clean) / 150
    flux[:, COLUMNS] = clean + rng.normal(size=clean.shape) * error[:, COLUMNS]
    return flux, error, np.zeros((n, 8575), np.int32)


def test_fit_cli_writes_a_catalog_equal_to_the_library_fit(tmp_path):
    model = apstar_model()
    folder = model.save(tmp_path / "tinypayne")
    flux, error, bitmask = spectra(model, 2, 0)
    files = [write_apstar(tmp_path / "in" / f"apStar-x-2M0000000{i}+0000000.fits", flux[i], error[i],
                          bitmask[i], {"APOGEE_ID": f"2M0000000{i}+0000000", "RA": 1.0, "DEC": 2.0})
             for i in range(2)]
    out = tmp_path / "cat.csv"
    res = CliRunner().invoke(cli, ["fit", str(folder), *map(str, files), "-o", str(out)])
    assert res.exit_code == 0, res.output
    cat = read_catalog(out).sort_values("APOGEE_ID")
    ref = model.fit(flux, error, bitmask)
    for k, name in enumerate(LABELS):
        np.testing.assert_allclose(cat[name].to_numpy(), ref.labels[:, k], rtol=1e-6)
        np.testing.assert_allclose(cat[f"{name}_ERR_JACOBIAN"].to_numpy(), ref.std[:, k], rtol=1e-5)
    assert set(cat["MODEL_NAME"]) == {"payne:tinypayne"}


def test_predict_accepts_a_payne_model_and_its_folder(tmp_path):
    model = apstar_model()
    flux, error, bitmask = spectra(model, 3, 1)
    bitmask[0, COLUMNS[:20]] = 1
    flux[0, COLUMNS[:20]] = 1e5
    pred = starlabels.predict(model, flux, error, bitmask=bitmask)
    ref = model.fit(flux, error, bitmask)
    assert pred.label_names == list(LABELS)
    np.testing.assert_allclose(pred.mean, ref.labels, rtol=1e-9)
    np.testing.assert_allclose(pred.std, ref.std, rtol=1e-9)
    folder = model.save(tmp_path / "m")
    again = starlabels.predict(starlabels.load_model(folder), flux, error, bitmask=bitmask)
    np.testing.assert_allclose(again.mean, pred.mean, rtol=1e-12)


def test_fit_cli_help_and_errors(tmp_path):
    res = CliRunner().invoke(cli, ["fit", "--help"])
    assert res.exit_code == 0 and "--fit-mask" in res.output and "EMULATOR" in res.output
    emu = tmp_path / "emu.npz"
    np.savez(emu, **{k: v.numpy() for k, v in tiny_emulator().weights.items()})
    res = CliRunner().invoke(cli, ["fit", str(emu), str(tmp_path), "-o", str(tmp_path / "c.csv")])
    assert res.exit_code != 0 and "--labels" in res.output
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    res = CliRunner().invoke(cli, ["fit", str(bad), str(tmp_path), "-o", str(tmp_path / "c.csv"),
                                   "--labels", "TEFF,LOGG,FE_H"])
    assert res.exit_code != 0 and "bad.npz" in res.output


@pytest.mark.parametrize("n_labels", [2])
def test_fit_cli_label_count_mismatch_names_the_file(tmp_path, n_labels):
    emu = tmp_path / "emu.npz"
    np.savez(emu, **{k: v.numpy() for k, v in tiny_emulator().weights.items()})
    res = CliRunner().invoke(cli, ["fit", str(emu), str(tmp_path), "-o", str(tmp_path / "c.csv"),
                                   "--labels", ",".join(LABELS[:n_labels])])
    assert res.exit_code != 0 and "emu.npz" in res.output and "3 labels" in res.output


def test_jacobian_sigma_is_calibrated_like_the_networks(tmp_path):
    """σ passed to the fit understated 2×: calibrate finds scales ≈ 2, kept in the model folder."""
    from starlabels.inference.calibration import calibrate

    model = apstar_model()
    flux, error, _ = spectra(model, 60, 2)
    entry = calibrate(model, flux, error / 2, truth(model, 60, 2), save=tmp_path / "cal")
    assert entry["uncertainty"] == "jacobian"
    scales = np.asarray([entry["scales"][n] for n in LABELS]) if isinstance(entry["scales"], dict) \
        else np.asarray(entry["scales"])
    assert np.all((scales > 1.6) & (scales < 2.5)), scales
    raw = starlabels.predict(model, flux[:5], error[:5] / 2,
                             options=starlabels.PredictOptions(calibrated=False))
    cal = starlabels.predict(starlabels.load_model(tmp_path / "cal"), flux[:5], error[:5] / 2)
    np.testing.assert_allclose(cal.std / raw.std, np.broadcast_to(scales, raw.std.shape), rtol=1e-6)
