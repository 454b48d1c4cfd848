"""Ingest: directory of apStar files + catalogue -> dataset; bad files skipped; resume after interruption."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.constants import MISSING
from starlabels.data import ingest as ingest_mod
from starlabels.data.hdf5 import SpectraDataset
from starlabels.data.ingest import find_spectrum_files, ingest_files
from starlabels.data.synthetic import SyntheticGenerator, write_apstar_files, write_label_catalog
from starlabels.errors import InputFileError

NAMES = ["TEFF", "LOGG", "FE_H", "MG_FE"]


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator(elements=("C", "N", "O", "MG", "AL"), seed=0)


@pytest.fixture(scope="module")
def archive(gen, tmp_path_factory):
    """7 good apStar files in nested folders, one truncated, one non-APOGEE FITS, a catalogue."""
    root = tmp_path_factory.mktemp("archive")
    s = gen.simulate(7, snr=60, seed=21, population="mixed")
    paths = write_apstar_files(root / "apo25m" / "fieldA", s.subset(slice(0, 4)))
    paths += write_apstar_files(root / "apo25m" / "fieldB", s.subset(slice(4, 7)))
    good = paths[0].read_bytes()
    trunc = root / "apo25m" / "fieldA" / "apStar-dr17-2M00000000+0000000.fits"
    trunc.write_bytes(good[: len(good) // 3])
    other = root / "apo25m" / "fieldB" / "apStar-dr17-notastar.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4), np.float32))]).writeto(other)
    (root / "apo25m" / "notes.txt").write_text("not a spectrum")
    # catalogue without the last star; one star listed twice, the first copy lacking labels
    cat = write_label_catalog(root / "labels.csv", s.subset(slice(0, 6)))
    with open(cat, newline="") as fh:
        rows = list(csv.DictReader(fh))
    dup = dict(rows[2])
    for k in NAMES:
        dup[k] = "-9999"
    rows.insert(0, dup)
    with open(cat, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {"root": root, "spectra": s, "paths": paths, "trunc": trunc, "other": other, "catalog": cat}


def _dataset_arrays(path):
    with SpectraDataset(path) as ds:  # closed again, so a later ingest can open it for writing
        return ds.read(), {name: ds.meta(name) for name in ds.meta_names}


def test_ingest_directory_with_bad_files(archive, tmp_path, gen):
    out = tmp_path / "train.h5"
    res = ingest_files([archive["root"]], out, labels=archive["catalog"], label_names=NAMES, batch_size=3)
    s = archive["spectra"]
    assert res.files_added == 7 and res.rows_added == 7 and res.rows_total == 7
    assert res.rows_unlabelled == 1
    reasons = dict(res.skipped)
    # found by content: notes.txt is listed as not a spectrum, not silently ignored
    notes = str((archive["root"] / "apo25m" / "notes.txt").resolve())
    table = str(archive["catalog"].resolve())  # the label CSV sits in the same folder
    assert set(reasons) == {str(archive["trunc"].resolve()), str(archive["other"].resolve()), notes, table}
    assert "not a spectrum" in reasons[notes] and "not a spectrum" in reasons[table]
    assert "truncated" in reasons[str(archive["trunc"].resolve())].lower() or \
        "short" in reasons[str(archive["trunc"].resolve())].lower()
    assert "apstar" in reasons[str(archive["other"].resolve())].lower()
    with open(res.skipped_csv, newline="") as fh:
        listed = {r["file"]: r["reason"] for r in csv.DictReader(fh)}
    assert listed == reasons and res.skipped_csv.name == "train.skipped.csv"

    b, meta = _dataset_arrays(out)
    # rows follow the sorted file paths; map each back to the generated star by APOGEE_ID
    star = {a: k for k, a in enumerate(s.meta["APOGEE_ID"])}
    k = np.array([star[a] for a in meta["apogee_id"]])
    assert sorted(k.tolist()) == list(range(7))
    np.testing.assert_array_equal(b.flux, s.flux[k])
    np.testing.assert_array_equal(b.error, s.error[k])
    np.testing.assert_array_equal(b.bitmask, s.bitmask[k])
    cols = [gen.label_names.index(n) for n in NAMES]
    labelled = k < 6
    np.testing.assert_allclose(b.labels[labelled], s.labels[k[labelled]][:, cols], rtol=1e-6)
    assert np.all(b.labels[~labelled] == MISSING) and np.all(b.label_errors[~labelled] == MISSING)
    np.testing.assert_allclose(b.label_errors[labelled, 0], 30.0)  # nominal TEFF_ERR of the catalogue
    np.testing.assert_allclose(meta["snr"], 60.0)
    np.testing.assert_allclose(meta["ra"], s.meta["RA"][k])
    assert meta["source"].tolist() == sorted(str(p.resolve()) for p in archive["paths"])
    assert SpectraDataset(out).grid.name == "apstar"

    # a second run finds everything present and adds nothing
    again = ingest_files([archive["root"]], out, labels=archive["catalog"], label_names=NAMES)
    assert again.files_added == 0 and again.files_present == 7 and again.rows_total == 7
    assert len(again.skipped) == 4


def test_interrupted_ingest_resumes_to_the_same_dataset(archive, tmp_path, monkeypatch):
    full = tmp_path / "full.h5"
    ingest_files([archive["root"]], full, labels=archive["catalog"], label_names=NAMES, batch_size=2)

    part = tmp_path / "part.h5"
    real = ingest_mod.read_spectra
    calls = {"n": 0}

    def flaky(path, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of a batch
        return real(path, **kw)

    monkeypatch.setattr(ingest_mod, "read_spectra", flaky)
    with pytest.raises(KeyboardInterrupt):
        ingest_files([archive["root"]], part, labels=archive["catalog"], label_names=NAMES, batch_size=2)
    monkeypatch.setattr(ingest_mod, "read_spectra", real)
    b_mid, _ = _dataset_arrays(part)
    assert 0 < len(b_mid.rows) < 7  # some batches were committed before the interruption

    res = ingest_files([archive["root"]], part, labels=archive["catalog"], label_names=NAMES, batch_size=2)
    assert res.files_present == len(b_mid.rows) and res.rows_total == 7
    b_full, meta_full = _dataset_arrays(full)
    b_part, meta_part = _dataset_arrays(part)
    assert len(set(meta_part["source"])) == 7  # no duplicates
    for name in ("flux", "error", "bitmask", "labels", "label_errors"):
        np.testing.assert_array_equal(getattr(b_part, name), getattr(b_full, name))
    assert meta_part.keys() == meta_full.keys()
    for name in meta_full:
        np.testing.assert_array_equal(meta_part[name], meta_full[name])


def test_visits_and_cli(gen, tmp_path):
    s = gen.simulate(2, snr=90, seed=5, n_visits=3)
    paths = write_apstar_files(tmp_path / "spec", s)
    out = tmp_path / "visits.h5"
    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "spec"), "-o", str(out), "--visits",
                                 "--group", "payne", str(tmp_path / "missing.fits")])
    assert r.exit_code == 0, r.output
    assert "6 rows" in r.output and "missing.fits" in r.output
    ds = SpectraDataset(out)
    assert len(ds) == 6 and ds.label_names == ()
    order = np.argsort([str(p.resolve()) for p in paths])
    expect = s.visits["flux"][order].reshape(6, -1)
    np.testing.assert_array_equal(ds.read().flux, expect)
    assert ds.meta("visit").tolist() == [0, 1, 2, 0, 1, 2]
    assert ds.meta("nvisits").tolist() == [3] * 6
    assert set(ds.meta("group")) == {"payne"}

    # the CLI with a catalogue; label names from the option
    cat = write_label_catalog(tmp_path / "cat.fits", s)
    out2 = tmp_path / "labelled.h5"
    r = CliRunner().invoke(cli, ["ingest", *map(str, paths), "-o", str(out2), "--labels", str(cat),
                                 "--label-names", "teff,logg,fe_h,mg_fe"])
    assert r.exit_code == 0, r.output
    ds2 = SpectraDataset(out2)
    assert ds2.label_names == ("TEFF", "LOGG", "FE_H", "MG_FE")
    assert ds2.label_units == ("K", "dex", "dex", "dex")
    cols = [gen.label_names.index(n) for n in ds2.label_names]
    np.testing.assert_allclose(ds2.read().labels, s.labels[order][:, cols], rtol=1e-6)
    # an existing dataset with other labels is refused with a clear message, and left alone
    before = out2.read_bytes()
    r = CliRunner().invoke(cli, ["ingest", str(paths[0]), "-o", str(out2), "--labels", str(cat)])
    assert r.exit_code != 0 and "label_names" in r.output
    assert out2.read_bytes() == before


def test_find_files_and_bad_catalog(archive, tmp_path):
    files, problems = find_spectrum_files([archive["root"], archive["paths"][0], tmp_path / "nope"])
    assert len(files) == 7  # by content: the 7 good files; the duplicate merged
    assert files == sorted(files, key=str)
    assert (str(tmp_path / "nope"), "no such file or directory") in problems
    listed = {p for p, _ in problems}
    assert {str(archive["trunc"].resolve()), str(archive["other"].resolve())} <= listed
    assert str((archive["root"] / "apo25m" / "notes.txt").resolve()) in listed
    with pytest.raises(InputFileError, match="XX_FE"):
        ingest_files([archive["root"]], tmp_path / "x.h5", labels=archive["catalog"],
                     label_names=["TEFF", "XX_FE"])
    assert not (tmp_path / "x.h5").exists()


def test_ingest_real_dr17_file(shared_data, tmp_path):
    from starlabels.io import read_apstar
    from starlabels.preprocess.bitmask import PIXMASK_BITS

    real = shared_data / "real" / "apStar-dr17-2M19485057+5005279.fits"
    out = tmp_path / "real.h5"
    res = ingest_files([real], out)
    assert res.rows_total == 1 and not res.skipped
    ds = SpectraDataset(out)
    b = ds.read()
    r = read_apstar(real)
    np.testing.assert_array_equal(b.flux[0], r.flux.astype(np.float32))  # NaN kept where the file has NaN
    np.testing.assert_array_equal(b.bitmask[0], r.bitmask)
    nan = np.isnan(b.flux[0])
    assert nan.sum() > 0 and np.all(b.bitmask[0][nan] & (1 << PIXMASK_BITS["BADPIX"]))
    assert ds.meta("apogee_id").tolist() == ["2M19485057+5005279"]
    assert ds.meta("snr")[0] == pytest.approx(137.489, abs=1e-3)
    assert ds.meta("nvisits").tolist() == [1]


def test_commits_during_the_run_give_the_same_dataset(archive, tmp_path, monkeypatch):
    """A commit replaces the open writer (work copy published, reopened). Appends after it must go to
    the new writer: with a commit after every batch the dataset equals the one-commit run. (Before the
    fix every ingest longer than COMMIT_SECONDS failed at its first append after a commit.)"""
    once = ingest_files([archive["root"]], tmp_path / "once.h5", labels=archive["catalog"], label_names=NAMES,
                        batch_size=2)
    monkeypatch.setenv("STARLABELS_INGEST_COMMIT_SECONDS", "0")
    often = ingest_files([archive["root"]], tmp_path / "often.h5", labels=archive["catalog"],
                         label_names=NAMES, batch_size=2)
    assert often.rows_added == once.rows_added == 7 and often.rows_total == 7
    (arrays_a, meta_a), (arrays_b, meta_b) = _dataset_arrays(tmp_path / "once.h5"), _dataset_arrays(
        tmp_path / "often.h5")
    for key in ("flux", "error", "bitmask", "labels"):
        np.testing.assert_array_equal(getattr(arrays_a, key), getattr(arrays_b, key))
    assert meta_a["source"].tolist() == meta_b["source"].tolist()
