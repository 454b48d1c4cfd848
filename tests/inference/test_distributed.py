"""Distributed catalogs on a Dask LocalCluster give exactly the single-process catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from starlabels.inference import catalog as C
from starlabels.inference import distributed as D


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
    units = [C.Unit(i, (C.InputItem("apstar", f"f{i}"),)) for i in range(10)]
    parts = D.partition(units, 4)
    assert [len(p) for p in parts] == [3, 3, 2, 2]
    assert [u for p in parts for u in p] == units
    assert D.partition(units[:2], 8) == [[units[0]], [units[1]]]


def test_local_cluster_with_two_workers_matches_the_single_process_run(
    raw_model_folder, apstar_dir, tmp_path
):
    kw = dict(uncertainty="noise", n_samples=6, seed=2, files_per_unit=2)
    single = C.run_catalog(raw_model_folder, [apstar_dir], tmp_path / "single.parquet", **kw)
    D.LOAD_COUNTS.clear()
    dist = D.run_distributed(raw_model_folder, [apstar_dir], tmp_path / "dist.parquet", workers=2,
                             processes=False, threads_per_worker=1, partitions_per_worker=2, **kw)
    assert dist.n_rows == single.n_rows == 7
    assert dist.units_computed == dist.units_total == 4
    pd.testing.assert_frame_equal(C.read_catalog(dist.path), C.read_catalog(single.path))
    assert dist.skipped == single.skipped and len(dist.skipped) == 1
    # each worker loaded the model once, however many partitions it ran
    assert 1 <= len(D.LOAD_COUNTS) <= 2 and set(D.LOAD_COUNTS.values()) == {1}
