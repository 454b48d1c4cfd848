"""PreprocessConfig: JSON round trip, validation, and apply == the functions it names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlabels.errors import InputDataError
from starlabels.preprocess import PreprocessConfig, continuum_normalise, raw_flux
from starlabels.preprocess.bitmask import DEFAULT_REJECT_BITS, PIXMASK_BITS, bits_to_value
from starlabels.preprocess.grids import APSTAR, ASPCAP, index_in


def _json_round_trip(cfg: PreprocessConfig) -> PreprocessConfig:
    return PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))


def test_defaults_and_grids():
    cfg = PreprocessConfig()
    assert cfg.kind == "continuum" and cfg.degree == 2
    assert cfg.reject_bits == list(DEFAULT_REJECT_BITS)
    assert cfg.output_grid is ASPCAP and cfg.n_pixels == ASPCAP.n_pixels
    raw = PreprocessConfig(kind="raw")
    assert raw.output_grid is APSTAR and raw.n_pixels == APSTAR.n_pixels


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["continuum", "raw"]),
    degree=st.integers(0, 5),
    bits=st.lists(st.one_of(st.sampled_from(sorted(PIXMASK_BITS)), st.integers(0, 31)), max_size=6),
    pixels=st.one_of(st.none(), st.lists(st.integers(0, ASPCAP.n_pixels - 1), max_size=50)),
    cap=st.one_of(st.none(), st.floats(0.1, 100)),
    on_failure=st.sampled_from(["raise", "reject"]),
)
def test_json_round_trip(kind, degree, bits, pixels, cap, on_failure):
    cfg = PreprocessConfig(kind=kind, degree=degree, reject_bits=bits, continuum_pixels=pixels,
                           error_cap=cap, on_failure=on_failure)
    back = _json_round_trip(cfg)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    assert PreprocessConfig.from_json(cfg.to_json()) == cfg
    # bits are stored as names where they have one, and mean the same bits
    assert bits_to_value(back.reject_bits) == bits_to_value(bits)
    if pixels is not None:
        assert back.continuum_pixels == sorted(set(pixels))


def test_mask_and_file_constructors(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random(ASPCAP.n_pixels) < 0.07
    cfg = PreprocessConfig.from_mask(mask, degree=3)
    assert cfg.continuum_pixels == np.flatnonzero(mask).tolist()
    np.testing.assert_array_equal(cfg.continuum_mask, mask)
    np.save(tmp_path / "m.npy", mask)
    assert PreprocessConfig.from_mask(tmp_path / "m.npy", degree=3) == cfg
    assert PreprocessConfig(continuum_pixels=mask).continuum_pixels == cfg.continuum_pixels


@pytest.mark.parametrize(
    "kwargs, match",
    [({"kind": "normalised"}, "kind"), ({"degree": -1}, "degree"), ({"degree": 1.5}, "degree"),
     ({"reject_bits": ["NOPE"]}, "unknown"), ({"reject_bits": [40]}, "out of range"),
     ({"continuum_pixels": [7514]}, r"\[0, 7514\)"), ({"error_cap": 0}, "error_cap"),
     ({"on_failure": "skip"}, "on_failure")],
)
def test_invalid_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PreprocessConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown preprocessing config keys"):
        PreprocessConfig.from_dict({"kind": "raw", "typo": 1})
    assert PreprocessConfig.from_dict({"kind": "raw"}) == PreprocessConfig(kind="raw")


def test_apply_continuum_equals_continuum_normalize_in_float32(synth):
    s = synth.spectra(5, seed=20)
    bitmask = np.zeros(s["flux"].shape, dtype=np.int32)
    bitmask[:, 1000:1010] = 1 << PIXMASK_BITS["PERSIST_HIGH"]
    cfg = _json_round_trip(
        PreprocessConfig.from_mask(s["mask"], reject_bits=["BADPIX", "PERSIST_HIGH"])
    )
    f, e = cfg.apply(s["flux"], s["error"], bitmask)
    rf, re = continuum_normalise(s["flux"], s["error"], bitmask, s["mask"], 2,
                                 bits=["BADPIX", "PERSIST_HIGH"])
    assert f.dtype == e.dtype == np.float32 and f.shape == (5, cfg.n_pixels)
    np.testing.assert_array_equal(f, rf.astype(np.float32))
    np.testing.assert_array_equal(e, re.astype(np.float32))
    assert np.all(f[:, (index_in(ASPCAP, "apstar") >= 1000) & (index_in(ASPCAP, "apstar") < 1010)] == 1.0)


def test_apply_raw_equals_raw_flux(synth):
    s = synth.spectra(3, seed=21)
    cfg = _json_round_trip(PreprocessConfig(kind="raw", error_cap=3.0))
    f, e = cfg.apply(s["flux"], s["error"])
    rf, re = raw_flux(s["flux"], s["error"], error_cap=3.0)
    assert f.dtype == np.float32 and f.shape == (3, APSTAR.n_pixels)
    np.testing.assert_array_equal(f, rf.astype(np.float32))
    np.testing.assert_array_equal(e, re.astype(np.float32))
    with pytest.raises(InputDataError, match="'apstar' \\(8575 px"):
        cfg.apply(s["flux"][:, index_in(ASPCAP, "apstar")], s["error"][:, index_in(ASPCAP, "apstar")])


def test_from_dict_reads_a_mask_file(tmp_path):
    mask = np.zeros(ASPCAP.n_pixels, dtype=bool)
    mask[[3, 300, 3000, 7000]] = True
    np.save(tmp_path / "m.npy", mask)
    cfg = PreprocessConfig.from_dict({"kind": "continuum", "continuum_mask": str(tmp_path / "m.npy")})
    assert cfg.continuum_pixels == [3, 300, 3000, 7000]
    assert "continuum_mask" not in cfg.to_dict()
    with pytest.raises(ValueError, match="not both"):
        PreprocessConfig.from_dict({"continuum_mask": str(tmp_path / "m.npy"), "continuum_pixels": [1]})


def test_median_scaled_raw_path_is_raw_flux_divided_by_the_median():
    rng = np.random.default_rng(3)
    n = APSTAR.n_pixels
    brightness = np.array([50.0, 800.0, 3000.0])[:, None]
    flux = brightness * (1 + 0.05 * rng.normal(size=(3, n)))
    error = 0.01 * flux
    bitmask = np.zeros((3, n), np.int32)
    bitmask[1, 100:110] = 1  # BADPIX: repaired, error BAD_PIXEL_ERROR
    cfg = PreprocessConfig(kind="raw", scale="median")
    f, e = cfg.apply(flux, error, bitmask)
    rf, re = raw_flux(flux, error, bitmask, error_cap=cfg.error_cap)
    usable = re < 1e9
    med = np.array([np.median(rf[i][usable[i]]) for i in range(3)])[:, None]
    np.testing.assert_allclose(f, rf / med, rtol=1e-6)
    np.testing.assert_allclose(e[usable], (re / med)[usable], rtol=1e-6)
    np.testing.assert_array_equal(e[~usable], re[~usable])  # the rejection marker is kept
    # brightness is gone: the same star 60x brighter gives the same input
    f2, _ = cfg.apply(60 * flux[:1], 60 * error[:1], bitmask[:1])
    np.testing.assert_allclose(f2, f[:1], rtol=1e-5)
    assert _json_round_trip(cfg) == cfg
    with pytest.raises(ValueError, match="raw preprocessing only"):
        PreprocessConfig(kind="continuum", scale="median")
    with pytest.raises(ValueError, match="scale"):
        PreprocessConfig(kind="raw", scale="mean")
