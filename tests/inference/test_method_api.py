"""One API over all methods: a Cannon model folder through ``run_catalog``, the Dask path and
``build_report`` exactly as a network's; the LabelMethod registry's errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import starlabels
from starlabels.errors import ModelFormatError
from starlabels.inference import catalog
from starlabels.models.cannon import CannonModel
from starlabels.preprocess.pipeline import PreprocessConfig

N, P = 160, 8575


@pytest.fixture(scope="module")
def cannon_setup(tmp_path_factory):
    """Raw apStar-grid spectra in an HDF5 dataset, and a Cannon folder trained on 120 of them
    (continuum normalisation as its preprocessing, so it takes raw flux)."""
    from starlabels.data.hdf5 import DatasetWriter

    tmp = tmp_path_factory.mktemp("cannon_api")
    rng = np.random.default_rng(2)
    z = rng.uniform(-1, 1, (N, 2))
    lines = np.abs(rng.normal(size=(2, P))) * (rng.random((1, P)) < 0.05)
    flux = 100 * (1 - 0.05 * (1 + z) @ lines) + rng.normal(0, 0.2, (N, P))
    error = np.full((N, P), 0.2)
    labels = np.stack([5000 + 400 * z[:, 0], 3 + 0.5 * z[:, 1]], 1)
    pre = PreprocessConfig(kind="continuum", degree=2)
    f, e = pre.apply(flux[:120], error[:120])
    model = CannonModel(["TEFF", "LOGG"], label_units=["K", "dex"], preprocessing=pre, n_starts=2)
    model.fit(f, np.where(e >= 1e10, np.inf, e), labels[:120])
    from starlabels.inference.calibration import calibrate

    calibrate(model, flux[100:120], error[100:120], labels[100:120])
    folder = model.save(tmp / "cannon_model")
    h5 = tmp / "test.h5"
    with DatasetWriter(h5, P, "apstar", ["TEFF", "LOGG"], compression=None, chunk_rows=16) as w:
        w.append(flux[120:].astype(np.float32), error[120:].astype(np.float32), np.zeros((40, P), np.int32),
                 labels=labels[120:].astype(np.float32), label_errors=np.zeros((40, 2), np.float32),
                 meta={"apogee_id": [f"2M{i:08d}" for i in range(40)]})
    return folder, h5, flux[120:].astype(np.float32), error[120:].astype(np.float32), labels[120:]


def test_run_catalog_with_a_cannon_folder(cannon_setup, tmp_path):
    folder, h5, flux, error, _ = cannon_setup
    res = catalog.run_catalog(folder, [h5], tmp_path / "cat.parquet")
    df = catalog.read_catalog(res.path)
    assert len(df) == 40
    assert (df["MODEL_NAME"] == f"cannon:{folder.name}").all()
    assert {"TEFF", "TEFF_ERR", "TEFF_ERR_FISHER", "LOGG_ERR_FISHER"} <= set(df.columns)
    direct = starlabels.predict(folder, flux, error)
    np.testing.assert_allclose(df[["TEFF", "LOGG"]].to_numpy(), direct.mean, rtol=1e-12)
    np.testing.assert_allclose(df[["TEFF_ERR", "LOGG_ERR"]].to_numpy(), direct.std, rtol=1e-12)
    assert direct.calibrated
    np.testing.assert_allclose(df["TEFF_ERR"], df["TEFF_ERR_FISHER"], rtol=1e-12)


@pytest.mark.slow
def test_dask_path_matches_the_single_process_catalog(cannon_setup, tmp_path):
    pytest.importorskip("distributed")
    from starlabels.inference import distributed as distributed_inference

    folder, h5, _, _, _ = cannon_setup
    single = catalog.run_catalog(folder, [h5], tmp_path / "single.parquet", rows_per_unit=16)
    dist = distributed_inference.run_distributed(
        folder,
        [h5],
        tmp_path / "dist.parquet",
        workers=2,
        processes=False,
        threads_per_worker=1,
        rows_per_unit=16,
    )
    pd.testing.assert_frame_equal(catalog.read_catalog(dist.path), catalog.read_catalog(single.path))


def test_report_reads_a_cannon_model_folder(cannon_setup, tmp_path):
    from starlabels.evaluation.report import build_report

    folder, h5, _, _, labels = cannon_setup
    res = catalog.run_catalog(folder, [h5], tmp_path / "cat.csv")
    cat = catalog.read_catalog(res.path)
    cat["TEFF_REF"], cat["LOGG_REF"] = labels[:, 0], labels[:, 1]
    cat.to_csv(tmp_path / "cat_ref.csv", index=False)
    out = build_report(folder, tmp_path / "cat_ref.csv", tmp_path / "report", figures=False)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "cannon" in html and "fisher" in html
    assert out is not None


def test_unknown_method_and_broken_folders(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format_version": 1, "method": "bayes_magic"}))
    with pytest.raises(ModelFormatError, match="unknown label method 'bayes_magic'"):
        starlabels.load_model(folder)
    (folder / "config.json").write_text(json.dumps({"format_version": 1, "method": "cannon"}))
    with pytest.raises(ModelFormatError, match=r"weights\.safetensors is missing"):
        starlabels.load_model(folder)
