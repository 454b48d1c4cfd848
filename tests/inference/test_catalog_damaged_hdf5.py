"""A damaged chunk in an HDF5 dataset costs a catalog run that unit's rows, listed with the reason;
the rest of the run goes on (it used to stop the run: zlib's error is none of the unit errors)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

import starlabels
from starlabels.inference import catalog as catalogs


@pytest.mark.parametrize("prefetch", ["process", False])
def test_a_corrupt_chunk_is_a_skipped_unit_not_a_stopped_run(raw_model_folder, spectra, tmp_path, prefetch):
    from starlabels.data.hdf5 import DatasetWriter

    flux, error, bitmask = spectra(6, seed=3)
    path = tmp_path / "rows.h5"
    with DatasetWriter(path, 8575, "apstar", chunk_rows=2) as writer:
        writer.append(flux, error, bitmask, meta={"apogee_id": [f"h{i}" for i in range(6)]})
    with h5py.File(path, "r+") as f:  # rows 2–3 of the flux: a deflate stream that is not one
        f["flux"].id.write_direct_chunk((2, 0), b"\x78\x9c damaged", filter_mask=0)

    res = catalogs.run_catalog(raw_model_folder, [path], tmp_path / "cat.parquet", rows_per_unit=2,
                               uncertainty="delta", prefetch=prefetch)
    assert res.units_total == 3 and res.n_rows == 4
    df = catalogs.read_catalog(tmp_path / "cat.parquet")
    assert df["APOGEE_ID"].tolist() == ["h0", "h1", "h4", "h5"]
    ref = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask, uncertainty="delta")
    np.testing.assert_allclose(df["TEFF"].to_numpy(), ref.mean[[0, 1, 4, 5], 0], rtol=1e-6)
    skipped = pd.read_csv(res.skipped_path, sep="\t")
    assert skipped["path"].tolist() == [f"{path}[2:4]"]
    assert "dataset /flux, the chunk of rows 2–3: corrupt deflate stream" in skipped["reason"].iloc[0]
