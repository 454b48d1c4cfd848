"""HDF5 dataset: round trips, resume after an interrupted append, lazy torch Dataset access."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from starlabels.constants import MISSING
from starlabels.data.hdf5 import DatasetWriter, SpectraDataset, read_dataset_info
from starlabels.errors import InputDataError, InputFileError
from starlabels.preprocess.grids import get_grid

P = get_grid("payne").n_pixels  # 7214: smallest grid keeps the test light
NAMES = ["TEFF", "LOGG", "FE_H"]


def _rows(rng, n):
    flux = rng.normal(500.0, 50.0, (n, P))
    error = rng.uniform(1.0, 10.0, (n, P))
    bitmask = rng.integers(0, 2**14, (n, P)).astype(np.int32) * (rng.random((n, P)) < 0.05)
    labels = np.column_stack([rng.uniform(3500, 7000, n), rng.uniform(0, 5, n), rng.normal(0, 0.3, n)])
    errors = np.abs(labels) * 0.01
    return flux, error, bitmask, labels, errors


def _write(path, rng, sizes, **kw):
    blocks = []
    with DatasetWriter(path, P, "payne", NAMES, **kw) as w:
        for k, n in enumerate(sizes):
            b = _rows(rng, n)
            ids = [f"2M{k:02d}{i:06d}" for i in range(n)]
            w.append(*b, meta={"apogee_id": ids, "snr": rng.uniform(10, 300, n), "nvisits": np.arange(n),
                               "source": f"file{k}.fits"})
            blocks.append((*b, np.array(ids)))
    return [np.concatenate(x) for x in zip(*blocks, strict=True)]


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "d.h5"
    flux, error, bitmask, labels, errors, ids = _write(path, rng, [5, 1, 12])
    info = read_dataset_info(path)
    assert (info.n_rows, info.n_pixels, info.grid.name) == (18, P, "payne")
    assert info.grid.same_as(get_grid("payne")) and info.instrument == "apogee"
    assert info.label_names == tuple(NAMES) and info.label_units == ("K", "dex", "dex")
    assert info.preprocessing is None and info.format_version == 2
    assert set(info.meta_names) == {"apogee_id", "snr", "nvisits", "source"}

    ds = SpectraDataset(path)
    assert len(ds) == 18 and ds.grid.name == "payne" and ds.label_names == tuple(NAMES)
    b = ds.read()
    np.testing.assert_array_equal(b.flux, flux.astype(np.float32))
    np.testing.assert_array_equal(b.error, error.astype(np.float32))
    np.testing.assert_array_equal(b.bitmask, bitmask)
    np.testing.assert_array_equal(b.labels, labels.astype(np.float32))
    np.testing.assert_array_equal(b.label_errors, errors.astype(np.float32))
    assert b.flux.dtype == np.float32 and b.bitmask.dtype == np.int32
    np.testing.assert_array_equal(ds.meta("apogee_id"), ids)
    assert ds.meta("nvisits").dtype == np.int32
    assert ds.meta("source").tolist() == ["file0.fits"] * 5 + ["file1.fits"] + ["file2.fits"] * 12
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["wavelength"][:], get_grid("payne").wavelength)
        assert f["flux"].chunks[0] == 16 and f["flux"].compression == "gzip"


def test_read_any_order_subset_and_chunks(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "d.h5"
    flux, *_ , ids = _write(path, rng, [40])
    subset = np.array([3, 39, 0, 17, 18, 5])
    ds = SpectraDataset(path, rows=subset)
    idx = np.array([5, 0, 0, 2, 1])  # unsorted, repeated, positions into the subset
    b = ds.read(idx)
    np.testing.assert_array_equal(b.rows, subset[idx])
    np.testing.assert_array_equal(b.flux, flux[subset[idx]].astype(np.float32))
    np.testing.assert_array_equal(ds.meta("apogee_id", idx), ids[subset[idx]])
    # sparse selection takes the fancy-index path
    ds_all = SpectraDataset(path)
    np.testing.assert_array_equal(ds_all.read([0, 39]).flux, flux[[0, 39]].astype(np.float32))
    chunks = list(ds_all.iter_chunks(15))
    assert [len(c) for c in chunks] == [15, 15, 10]
    np.testing.assert_array_equal(np.concatenate([c.flux for c in chunks]), flux.astype(np.float32))
    with pytest.raises(IndexError):
        ds.read([6])
    with pytest.raises(InputDataError):
        SpectraDataset(path, rows=[40])


def test_torch_dataset_and_dataloader_workers(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "d.h5"
    flux, _, _, labels, *_ = _write(path, rng, [10])
    ds = SpectraDataset(path, rows=np.arange(2, 10))
    item = ds[1]
    assert item["row"] == 3 and item["flux"].shape == (P,) and item["flux"].dtype == torch.float32
    torch.testing.assert_close(item["labels"], torch.tensor(labels[3], dtype=torch.float32))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False, num_workers=2)
    batches = list(loader)
    assert [len(b["row"]) for b in batches] == [3, 3, 2]
    got = torch.cat([b["flux"] for b in batches]).numpy()
    np.testing.assert_array_equal(got, flux[2:10].astype(np.float32))
    assert torch.cat([b["row"] for b in batches]).tolist() == list(range(2, 10))


def test_resume_and_interrupted_append(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "d.h5"
    flux, *_ = _write(path, rng, [6])
    # simulate a crash inside an append: datasets grown and half written, n_rows not yet updated
    with h5py.File(path, "r+") as f:
        for name in ("flux", "error", "bitmask", "labels"):
            f[name].resize(9, axis=0)
            f[name][6:9] = 7
        f["meta/apogee_id"].resize(8, axis=0)
    assert read_dataset_info(path).n_rows == 6
    assert len(SpectraDataset(path)) == 6  # readers ignore the partial rows
    more = _rows(rng, 4)
    with DatasetWriter(path, P, "payne", NAMES) as w:
        assert w.dropped_rows == 3 and w.n_rows == 6
        n = w.append(*more, meta={"apogee_id": ["a", "b", "c", "d"]})
        assert n == 10
    ds = SpectraDataset(path)
    b = ds.read()
    np.testing.assert_array_equal(b.flux[:6], flux.astype(np.float32))
    np.testing.assert_array_equal(b.flux[6:], more[0].astype(np.float32))
    assert ds.meta("apogee_id")[6:].tolist() == ["a", "b", "c", "d"]
    # columns not given in the second append are filled (NaN float, -1 int, "" str)
    assert np.isnan(ds.meta("snr")[6:]).all() and (ds.meta("nvisits")[6:] == -1).all()
    assert ds.meta("source")[6:].tolist() == [""] * 4
    with h5py.File(path) as f:
        assert all(f[k].shape[0] == 10 for k in ("flux", "labels", "meta/apogee_id", "meta/snr"))


def test_labels_missing_and_new_meta_backfilled(tmp_path):
    path = tmp_path / "d.h5"
    rng = np.random.default_rng(5)
    f1, e1, _, _, _ = _rows(rng, 2)
    f2, e2, _, lab, _ = _rows(rng, 3)
    lab[1, 2] = np.nan
    with DatasetWriter(path, P, "payne", NAMES, label_units=["K", "dex", "dex"]) as w:
        w.append(f1, e1)  # no labels, no bitmask, no meta
        w.append(f2, e2, labels=lab, meta={"group": "mdwarf", "weight": np.array([1.5, 2.0, 3.0])})
    ds = SpectraDataset(path)
    b = ds.read()
    assert (b.labels[:2] == MISSING).all() and (b.label_errors == MISSING).all()
    assert b.labels[3, 2] == MISSING and b.labels[3, 0] == np.float32(lab[1, 0])
    assert (b.bitmask[:2] == 0).all()
    assert ds.meta("group").tolist() == ["", "", "mdwarf", "mdwarf", "mdwarf"]
    np.testing.assert_array_equal(ds.meta("weight"), [np.nan, np.nan, 1.5, 2.0, 3.0])


def test_no_labels_dataset(tmp_path):
    path = tmp_path / "d.h5"
    rng = np.random.default_rng(6)
    f, e, m, _, _ = _rows(rng, 3)
    with DatasetWriter(path, P, "payne", []) as w:
        w.append(f, e, m)
    b = SpectraDataset(path).read([2, 0])
    assert b.labels.shape == (2, 0)
    np.testing.assert_array_equal(b.bitmask, m[[2, 0]])


def test_bad_inputs_and_files(tmp_path):
    path = tmp_path / "d.h5"
    rng = np.random.default_rng(7)
    f, e, m, lab, _ = _rows(rng, 2)
    with DatasetWriter(path, P, "payne", NAMES) as w:
        with pytest.raises(InputDataError):
            w.append(f[:, :100], e[:, :100])
        with pytest.raises(InputDataError):
            w.append(f, e, labels=lab[:, :2])
        with pytest.raises(InputDataError):
            w.append(f, e, meta={"snr": [1.0, 2.0, 3.0]})
        assert w.n_rows == 0  # nothing written by the failed calls
        w.append(f, e, m, lab)
    with pytest.raises(InputDataError):
        DatasetWriter(tmp_path / "x.h5", 8575, "payne", NAMES)
    # an existing dataset with other labels is refused and left as it was
    before = path.read_bytes()
    with pytest.raises(InputFileError, match="label_names"):
        DatasetWriter(path, P, "payne", ["TEFF"])
    assert path.read_bytes() == before
    # not HDF5
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputFileError, match="not a readable HDF5"):
        SpectraDataset(junk)
    with pytest.raises(InputFileError):
        DatasetWriter(junk, P, "payne", NAMES)
    assert junk.read_bytes() == b"not an hdf5 file at all"
    # HDF5 but another format, and a future version
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h:
        h["x"] = np.arange(3)
    with pytest.raises(InputFileError, match="not a starlabels"):
        read_dataset_info(other)
    with h5py.File(path, "r+") as h:
        h.attrs["format_version"] = 3
    with pytest.raises(InputFileError, match="format_version 3"):
        SpectraDataset(path)
    with pytest.raises(InputFileError, match="does not exist"):
        read_dataset_info(tmp_path / "nope.h5")


def test_grid_travels_with_the_data_boss_and_custom(tmp_path):
    """A BOSS dataset and one on a user's grid store the grid itself (wavelengths, segments,
    checksum) and the instrument; reading gives back the same grid; resuming with another grid,
    even of the same length, is refused."""
    from starlabels.core.grid import from_wavelength
    from starlabels.instruments import get

    boss = get("boss").grid
    rng = np.random.default_rng(8)
    path = tmp_path / "boss.h5"
    flux = rng.normal(10.0, 1.0, (3, boss.n_pixels))
    with DatasetWriter(path, None, boss, ["TEFF"]) as w:
        w.append(flux, np.ones_like(flux))
    info = read_dataset_info(path)
    assert info.grid.same_as(boss) and info.instrument == "boss" and info.grid.name == "boss"
    assert dict(info.grid.segments) == dict(boss.segments)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["wavelength"][:], boss.wavelength)
    np.testing.assert_array_equal(SpectraDataset(path).read().flux, flux.astype(np.float32))
    # a grid of the same length but other wavelengths is another grid
    shifted = from_wavelength(boss.wavelength * 1.0001, name="boss")
    with pytest.raises(InputFileError, match="existing dataset differs: grid"):
        DatasetWriter(path, None, shifted, ["TEFF"])

    # a user's grid (e.g. LAMOST-like, not log-linear): the wavelengths are stored in the attribute
    wave = np.linspace(3700.0, 9100.0, 501) + 0.1 * np.sin(np.arange(501))
    custom = from_wavelength(wave, segments={"b": (3700.0, 5800.0), "r": (5800.0, 9200.0)}, name="lamost")
    cpath = tmp_path / "custom.h5"
    with DatasetWriter(cpath, 501, custom, [], instrument="lamost") as w:
        w.append(rng.normal(1, 0.1, (2, 501)), np.full((2, 501), 0.1))
    ci = read_dataset_info(cpath)
    assert ci.grid.same_as(custom) and ci.instrument == "lamost"
    np.testing.assert_array_equal(ci.grid.wavelength, wave)
    assert list(ci.grid.segments) == ["b", "r"]
    with pytest.raises(InputDataError, match="501 pixels, n_pixels=500"):
        DatasetWriter(tmp_path / "y.h5", 500, custom, [])


def test_grid_checksum_mismatch_is_refused(tmp_path):
    path = tmp_path / "d.h5"
    rng = np.random.default_rng(9)
    f, e, m, lab, _ = _rows(rng, 2)
    with DatasetWriter(path, P, "payne", NAMES) as w:
        w.append(f, e, m, lab)
    with h5py.File(path, "r+") as h:
        d = json.loads(h.attrs["grid"])
        d["checksum"] = "0" * 16
        h.attrs["grid"] = json.dumps(d)
    with pytest.raises(InputFileError, match="checksum") as info:
        SpectraDataset(path)
    assert str(path) in str(info.value)
    # a wavelength array that disagrees with the stored grid
    with h5py.File(path, "r+") as h:
        h.attrs["grid"] = json.dumps(get_grid("payne").to_dict())
        h["wavelength"][0] = 1.0
    with pytest.raises(InputFileError, match="'wavelength' array does not match"):
        read_dataset_info(path)


def test_old_format_version_1_files_still_load(tmp_path):
    """A version 1 file (grid attribute = a built-in grid's name, no instrument) written by hand
    exactly as the old writer did is read as that grid; it can be resumed too."""
    rng = np.random.default_rng(10)
    grid = get_grid("apstar")
    n, p = 3, grid.n_pixels
    flux = rng.normal(1000.0, 30.0, (n, p)).astype(np.float32)
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as h:
        h.attrs["format"] = "starlabels-spectra"
        h.attrs["format_version"] = 1
        h.attrs["grid"] = "apstar"
        h.attrs["label_names"] = json.dumps(["TEFF"])
        h.attrs["label_units"] = json.dumps(["K"])
        h.attrs["created"] = "2026-01-01T00:00:00+00:00"
        h.attrs["preprocessing"] = "null"
        h.attrs["n_rows"] = n
        for name, arr in (("flux", flux), ("error", np.ones_like(flux)),
                          ("bitmask", np.zeros((n, p), np.int32))):
            h.create_dataset(name, data=arr, maxshape=(None, p), chunks=(16, p))
        for name in ("labels", "label_errors"):
            h.create_dataset(name, data=np.full((n, 1), 4500.0, np.float32), maxshape=(None, 1),
                             chunks=(256, 1))
        h.create_dataset("wavelength", data=10.0 ** (4.179 + 6e-6 * np.arange(p)))
        h.create_group("meta")
    ds = SpectraDataset(path)
    assert ds.grid.same_as(grid) and ds.instrument == "apogee" and ds.info.format_version == 1
    np.testing.assert_array_equal(ds.read().flux, flux)
    ds.close()
    with DatasetWriter(path, None, "apstar", ["TEFF"]) as w:  # resuming an old file appends
        w.append(flux[:1], np.ones_like(flux[:1]))
        assert w.n_rows == n + 1
