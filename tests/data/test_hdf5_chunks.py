"""Row ranges decoded from raw HDF5 chunks equal h5py's own reads bit for bit, for every layout."""

from __future__ import annotations

import zlib

import h5py
import numpy as np
import pytest

from starlabels.data.hdf5_chunks import read_row_range
from starlabels.errors import InputFileError

LAYOUTS = {
    "gzip+shuffle (DatasetWriter's default)": dict(chunks=(7, 50), compression="gzip", compression_opts=4,
                                                   shuffle=True),
    "gzip": dict(chunks=(7, 50), compression="gzip"),
    "shuffle only": dict(chunks=(7, 50), shuffle=True),
    "chunked, no filter": dict(chunks=(7, 50)),
    "lzf (h5py reads it)": dict(chunks=(7, 50), compression="lzf"),
    "contiguous (h5py reads it)": dict(),
    "chunks splitting rows (h5py reads it)": dict(chunks=(7, 20), compression="gzip"),
    "fletcher32 (h5py reads it)": dict(chunks=(7, 50), compression="gzip", fletcher32=True),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i8", "<i2"])
def test_row_ranges_equal_h5py(tmp_path, layout, dtype):
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(40, 50)) * 1000).astype(dtype)
    data[3, 5] = 0 if data.dtype.kind == "i" else np.nan
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=data, **LAYOUTS[layout])
    with h5py.File(tmp_path / "d.h5") as f:
        ds = f["x"]
        for start, stop in [(0, 40), (0, 7), (3, 4), (5, 23), (14, 21), (33, 40), (39, 40), (10, 10)]:
            got = read_row_range(ds, start, stop)
            want = ds[start:stop]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            assert got.tobytes() == want.tobytes()  # NaN payloads and signs too


def test_a_chunk_stored_unfiltered_and_unwritten_chunks(tmp_path):
    """A chunk HDF5 stored with a filter skipped (its filter mask bit set) and a dataset whose last
    chunk was never written (h5py returns the fill value) read as h5py reads them."""
    data = np.arange(60, dtype="<f4").reshape(6, 10)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        ds = f.create_dataset("x", shape=(9, 10), chunks=(3, 10), compression="gzip", shuffle=True,
                              dtype="<f4", fillvalue=-1.0)
        ds[:6] = data
        ds.id.write_direct_chunk((3, 0), data[3:6].tobytes(), filter_mask=0b11)  # stored raw
    with h5py.File(tmp_path / "d.h5") as f:
        ds = f["x"]
        np.testing.assert_array_equal(read_row_range(ds, 0, 9), ds[0:9])
        np.testing.assert_array_equal(read_row_range(ds, 2, 5), data[2:5])


def _damaged(path, chunk: bytes, filter_mask: int) -> None:
    """A 6×10 float32 gzip+shuffle dataset whose second chunk (rows 3–5) is ``chunk`` as stored."""
    data = np.arange(60, dtype="<f4").reshape(6, 10)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(6, 10), chunks=(3, 10), compression="gzip", shuffle=True,
                              dtype="<f4")
        ds[:3] = data[:3]
        ds.id.write_direct_chunk((3, 0), chunk, filter_mask=filter_mask)


def test_a_chunk_that_decodes_short_is_an_error_naming_the_file_not_garbage(tmp_path):
    """Deflated bytes of two rows stored as a three-row chunk: h5py returns whatever memory held for
    the missing row; read_row_range names the file, dataset and rows instead."""
    data = np.arange(60, dtype="<f4").reshape(6, 10)
    _damaged(tmp_path / "d.h5", zlib.compress(data[3:5].tobytes()), filter_mask=0b01)  # shuffle skipped
    with h5py.File(tmp_path / "d.h5") as f:
        ds = f["x"]
        assert ds[0:6].shape == (6, 10)  # h5py: no error
        np.testing.assert_array_equal(read_row_range(ds, 0, 3), data[:3])  # the intact chunk reads
        for start, stop in [(0, 6), (3, 6), (4, 5)]:  # whole and partial reads of the damaged chunk
            with pytest.raises(InputFileError) as err:
                read_row_range(ds, start, stop)
            assert err.value.path == str(tmp_path / "d.h5")
            assert "dataset /x, the chunk of rows 3–5: decodes to 80 bytes, expected 120" in str(err.value)


def test_a_corrupt_deflate_stream_is_an_input_file_error(tmp_path):
    """h5py raises a bare OSError; read_row_range an InputFileError (a ValueError too, so a catalog
    run records the unit as failed) naming the file and chunk."""
    _damaged(tmp_path / "d.h5", b"\x78\x9c not deflate at all", filter_mask=0)
    with h5py.File(tmp_path / "d.h5") as f:
        ds = f["x"]
        with pytest.raises(OSError):
            ds[3:6]
        with pytest.raises(InputFileError, match="the chunk of rows 3–5: corrupt deflate stream") as err:
            read_row_range(ds, 3, 6)
        assert isinstance(err.value, ValueError) and err.value.path == str(tmp_path / "d.h5")
