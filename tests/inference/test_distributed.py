"""Distributed catalogs on a Dask LocalCluster give exactly the single-process catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starlabels.inference import catalog as catalogs
from starlabels.inference import distributed
from starlabels.inference.catalog_inputs import InputItem, Unit


@pytest.fixture
def apstar_dir(tmp_path, spectra):
    from starlabels.io import write_apstar

    flux, error, bitmask = spectra(7, seed=5)
    flux[4] = np.nan
    d = tmp_path / "in"
    d.mkdir()
    for i in range(7):
        write_apstar(d / f"apStar-dr17-2M1000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M1000000{i}", "RA": float(i), "DEC": 1.0})
    (d / "apStar-dr17-2M1000000x.fits").write_bytes(b"not fits")
    return d


def test_partition_is_contiguous_and_complete():
    units = [Unit(i, (InputItem("apstar", f"f{i}"),)) for i in range(10)]
    parts = distributed.partition(units, 4)
    assert [len(p) for p in parts] == [3, 3, 2, 2]
    assert [u for p in parts for u in p] == units
    assert distributed.partition(units[:2], 8) == [[units[0]], [units[1]]]


def test_local_cluster_with_two_workers_matches_the_single_process_run(
    raw_model_folder, apstar_dir, tmp_path
):
    kw = dict(uncertainty="noise", n_samples=6, seed=2, files_per_unit=2)
    single = catalogs.run_catalog(raw_model_folder, [apstar_dir], tmp_path / "single.parquet", **kw)
    distributed.LOAD_COUNTS.clear()
    dist = distributed.run_distributed(raw_model_folder, [apstar_dir], tmp_path / "dist.parquet", workers=2,
                             processes=False, threads_per_worker=1, partitions_per_worker=2, **kw)
    assert dist.n_rows == single.n_rows == 7
    assert dist.units_computed == dist.units_total == 4
    pd.testing.assert_frame_equal(catalogs.read_catalog(dist.path), catalogs.read_catalog(single.path))
    assert dist.skipped == single.skipped and len(dist.skipped) == 1
    # each worker loaded the model once, however many partitions it ran
    assert 1 <= len(distributed.LOAD_COUNTS) <= 2 and set(distributed.LOAD_COUNTS.values()) == {1}


def test_dask_on_sdss5_files_and_another_grid_with_resample(raw_model_folder, apstar_dir, tmp_path):
    """The same folder plus an mwmStar file (APOGEE and BOSS HDUs) and a table spectrum on a shifted
    grid, resample='linear': Dask gives the single-process catalog, SDSS_ID/TELESCOPE/HDU included,
    the BOSS HDU listed as skipped by both."""
    from starlabels.instruments import get
    from starlabels.io import Spectrum, write_mwm_star

    apogee, boss = get("apogee"), get("boss")
    rng = np.random.default_rng(1)
    flux = 100 + rng.normal(0, 1, apogee.n_pixels)
    write_mwm_star(apstar_dir / "mwmStar-0.8.1-7.fits",
                   [Spectrum("apogee", apogee.wavelength, flux, np.ones_like(flux), np.zeros(flux.size, int),
                             {"TELESCOPE": "lco25m"}),
                    Spectrum("boss", boss.wavelength, np.ones(boss.n_pixels), np.ones(boss.n_pixels),
                             np.zeros(boss.n_pixels, int), {})], {"SDSS_ID": 7})
    crval, cdelt = apogee.grid.log_linear
    shifted = 10 ** (crval + cdelt * (np.arange(apogee.n_pixels) + 0.3))
    np.savez(apstar_dir / "shifted.npz", wavelength=shifted, flux=flux, error=np.ones_like(flux))
    kw = dict(seed=2, files_per_unit=3, resample="linear")
    single = catalogs.run_catalog(raw_model_folder, [apstar_dir], tmp_path / "single.parquet", **kw)
    dist = distributed.run_distributed(raw_model_folder, [apstar_dir], tmp_path / "dist.parquet", workers=2,
                             processes=False, threads_per_worker=1, **kw)
    a, b = catalogs.read_catalog(single.path), catalogs.read_catalog(dist.path)
    pd.testing.assert_frame_equal(b, a)
    assert len(a) == 9 and a["SDSS_ID"].tolist().count(7) == 1
    row = a[a["SDSS_ID"] == 7].iloc[0]
    assert row["TELESCOPE"] == "lco25m" and row["HDU"] == "APOGEE/LCO"
    assert (a["SOURCE"].str.endswith("shifted.npz") & (a["FLAG"] & (1 << 8) > 0)).sum() == 1  # RESAMPLED
    assert dist.skipped == single.skipped
    assert any(p.endswith("[BOSS/APO]") for p, _ in single.skipped)
