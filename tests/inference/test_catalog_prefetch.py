"""Catalog runs with the thread reader (``prefetch="thread"``) read and prepare the next unit in a
background thread: same catalog, real overlap, retries intact; parts are written by a writer thread.
The reading process (the default on Linux) is tested in test_catalog_reading_process.py."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from starlabels.inference import catalog as catalogs
from starlabels.inference import catalog_reading

KW = dict(uncertainty="noise", n_samples=4, seed=3, files_per_unit=2, rows_per_unit=2)
THREAD = dict(KW, prefetch="thread")


def spy_reads(monkeypatch) -> list[tuple[int, str]]:
    """Record (unit index, thread name) of every unit read."""
    real, seen = catalog_reading.read_unit, []

    def spy(unit, im, resample):
        seen.append((unit.index, threading.current_thread().name))
        return real(unit, im, resample)

    monkeypatch.setattr(catalog_reading, "read_unit", spy)
    return seen


def spy_preparations(monkeypatch) -> list[str]:
    """Record the thread name of every block prepared for the network."""
    real, seen = catalog_reading.prepare_spectra, []

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog_reading, "prepare_spectra", spy)
    return seen


def test_prefetched_catalog_is_bit_identical_and_read_in_the_background(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    seen, prepared = spy_reads(monkeypatch), spy_preparations(monkeypatch)
    plain = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "plain.parquet", prefetch=False, **KW)
    assert [i for i, _ in seen] == [0, 1, 2, 3] and {t for _, t in seen} == {"MainThread"}
    assert prepared == ["MainThread"] * 4  # one block per unit
    seen.clear()
    prepared.clear()
    ahead = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "ahead.parquet", **THREAD)
    assert [i for i, _ in seen] == [0, 1, 2, 3] and {t for _, t in seen} == {"starlabels-prefetch"}
    # the preprocessing runs in the reading thread too: the computing thread only runs the network
    assert prepared == ["starlabels-prefetch"] * 4
    assert ahead.n_rows == plain.n_rows == 7 and ahead.skipped == plain.skipped
    a, b = catalogs.read_catalog(ahead.path), catalogs.read_catalog(plain.path)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert np.isfinite(a["TEFF_ERR_NOISE"]).sum() == 6  # noise realisations really ran (NaN-only row: NaN)


def test_the_next_unit_is_read_while_one_is_computed(raw_model_folder, inputs, tmp_path, monkeypatch):
    """While unit 0 is predicted, unit 1 gets read (the predict step waits for that read)."""
    real_read, real_predict = catalog_reading.read_unit, catalogs.predict_blocks
    read_started = {i: threading.Event() for i in range(4)}
    overlapped = []

    def read(unit, im, resample):
        read_started[unit.index].set()
        return real_read(unit, im, resample)

    def predict_blocks(im, unit, read, settings):
        if unit.index + 1 in read_started:
            overlapped.append(read_started[unit.index + 1].wait(timeout=30))
        return real_predict(im, unit, read, settings)

    monkeypatch.setattr(catalog_reading, "read_unit", read)
    monkeypatch.setattr(catalogs, "predict_blocks", predict_blocks)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **THREAD)
    assert res.n_rows == 7 and overlapped == [True, True, True]


def test_a_unit_whose_read_ahead_failed_is_read_again_by_its_retry(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    full = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "full.csv", prefetch=False, **KW)
    real, calls = catalog_reading.read_unit, []

    def flaky(unit, im, resample):
        calls.append((unit.index, threading.current_thread().name))
        if unit.index == 2 and len([c for c in calls if c[0] == 2]) == 1:
            raise OSError(5, "Input/output error")
        return real(unit, im, resample)

    monkeypatch.setattr(catalog_reading, "read_unit", flaky)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **THREAD)
    assert [c for c in calls if c[0] == 2] == [(2, "starlabels-prefetch"), (2, "MainThread")]
    assert not res.failed_units
    pd.testing.assert_frame_equal(catalogs.read_catalog(res.path), catalogs.read_catalog(full.path),
                                  check_exact=True)


def test_an_error_that_is_not_a_unit_failure_stops_the_run_and_the_reader(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    def broken(unit, im, resample):
        if unit.index == 1:
            raise MemoryError("simulated")
        return real(unit, im, resample)

    real = catalog_reading.read_unit
    monkeypatch.setattr(catalog_reading, "read_unit", broken)
    with pytest.raises(MemoryError, match="simulated"):
        catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **THREAD)
    assert not any(t.name == "starlabels-prefetch" for t in threading.enumerate())
    out = tmp_path / "c.csv"
    assert not out.exists()
    monkeypatch.setattr(catalog_reading, "read_unit", real)  # the same command again resumes after unit 0
    res = catalogs.run_catalog(raw_model_folder, inputs, out, **THREAD)
    assert res.units_computed == 3 and res.n_rows == 7


def test_parts_are_written_by_a_writer_thread_and_a_failed_write_is_retried(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    """With prefetch, each unit's parts file and marker are written in the writer thread while the
    next unit computes; a write that fails there (a full disk) sends its unit back to the retries in
    the computing thread, and the catalog ends complete and equal to a run without prefetch."""
    plain = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "plain.parquet", prefetch=False, **KW)
    real, writes = catalogs.write_unit, []

    def full_disk_once(pdir, unit, df, skipped):
        writes.append((unit.index, threading.current_thread().name))
        if unit.index == 1 and len([i for i, _ in writes if i == 1]) == 1:
            raise OSError(28, "No space left on device")
        return real(pdir, unit, df, skipped)

    monkeypatch.setattr(catalogs, "write_unit", full_disk_once)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "ahead.parquet", **THREAD)
    # unit 1's failed write is noticed before unit 2's is handed over, and retried right there
    assert writes == [(0, "starlabels-writer_0"), (1, "starlabels-writer_0"), (1, "MainThread"),
                      (2, "starlabels-writer_0"), (3, "starlabels-writer_0")]
    assert res.n_rows == plain.n_rows == 7 and not res.failed_units
    pd.testing.assert_frame_equal(catalogs.read_catalog(res.path), catalogs.read_catalog(plain.path),
                                  check_exact=True)
