"""Catalog runs with the reading process (``prefetch="process"``, the default on Linux): the units are
read and prepared in another process, ahead of the network; the catalog is bit-identical to reading in
line; unit errors are retried in the network's process; a reading process that dies costs only the
unit it was reading; an error that is not a unit failure stops the run and the process.

The reading process is forked, so functions patched here (``catalog_reading.read_unit``) run patched
in it too; what they record goes through files, the processes' only shared memory."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from starlabels.errors import InputFileError
from starlabels.inference import catalog as catalogs
from starlabels.inference import catalog_reading

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the reading process is Linux-only")

KW = dict(uncertainty="noise", n_samples=4, seed=3, files_per_unit=2, rows_per_unit=2)
PROCESS = dict(KW, prefetch="process")


def logged_reads(monkeypatch, log: Path, before=None) -> None:
    """Make every unit read append ``<unit index> <pid>`` to ``log`` (and call ``before(unit)`` first)."""
    real = catalog_reading.read_unit

    def logged(unit, im, resample):
        with open(log, "a") as f:
            f.write(f"{unit.index} {os.getpid()}\n")
        if before is not None:
            before(unit)
        return real(unit, im, resample)

    monkeypatch.setattr(catalog_reading, "read_unit", logged)


def reads(log: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("shared_from", [catalog_reading.SHARED_MEMORY_MIN_BYTES, 0],
                         ids=["small-arrays-pickled", "every-float-array-in-shared-memory"])
def test_the_catalog_is_read_in_another_process_and_is_bit_identical(
    raw_model_folder, inputs, tmp_path, monkeypatch, shared_from
):
    monkeypatch.setattr(catalog_reading, "SHARED_MEMORY_MIN_BYTES", shared_from)
    plain = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "plain.parquet", prefetch=False, **KW)
    log = tmp_path / "reads.log"
    logged_reads(monkeypatch, log)
    ahead = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "ahead.parquet", **PROCESS)
    seen = reads(log)
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    pids = {p for _, p in seen}
    assert len(pids) == 1 and os.getpid() not in pids  # one reading process, not this one
    assert ahead.n_rows == plain.n_rows == 7 and ahead.skipped == plain.skipped
    a, b = catalogs.read_catalog(ahead.path), catalogs.read_catalog(plain.path)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert np.isfinite(a["TEFF_ERR_NOISE"]).sum() == 6  # noise realisations really ran (NaN-only row: NaN)
    assert not multiprocessing.active_children()  # the reading process is gone after the run


def test_the_default_reader_on_linux_is_the_process(raw_model_folder, inputs, tmp_path, monkeypatch):
    log = tmp_path / "reads.log"
    logged_reads(monkeypatch, log)
    catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **KW)
    assert os.getpid() not in {p for _, p in reads(log)}
    assert catalog_reading.reader_name(True) == "process"
    assert catalog_reading.reader_name(False) == "inline"
    with pytest.raises(ValueError, match="prefetch must be"):
        catalog_reading.reader_name("processes")


def test_the_next_units_are_read_while_one_is_computed(raw_model_folder, inputs, tmp_path, monkeypatch):
    """While unit k is predicted here, unit k+1 gets read in the reading process."""
    log = tmp_path / "reads.log"
    logged_reads(monkeypatch, log)
    real_predict, overlapped = catalogs.predict_blocks, []

    def predict_blocks(im, unit, read, settings):
        if unit.index < 3:
            deadline = time.monotonic() + 30
            while unit.index + 1 not in [i for i, _ in reads(log)] and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append(unit.index + 1 in [i for i, _ in reads(log)])
        return real_predict(im, unit, read, settings)

    monkeypatch.setattr(catalogs, "predict_blocks", predict_blocks)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **PROCESS)
    assert res.n_rows == 7 and overlapped == [True, True, True]


def test_the_reading_process_exits_while_the_last_unit_is_computed(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    """Once the last unit is handed over, the reading process is shut down in the background: it is
    gone while that unit is still being predicted here, not joined after it."""
    real_predict, gone = catalogs.predict_blocks, []

    def predict_blocks(im, unit, read, settings):
        if unit.index == 3:  # the last of the four units
            deadline = time.monotonic() + 30
            while multiprocessing.active_children() and time.monotonic() < deadline:
                time.sleep(0.01)
            gone.append(not multiprocessing.active_children())
        return real_predict(im, unit, read, settings)

    monkeypatch.setattr(catalogs, "predict_blocks", predict_blocks)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **PROCESS)
    assert res.units_total == 4 and res.n_rows == 7 and gone == [True]


def test_a_unit_whose_read_failed_in_the_process_is_read_again_here(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    full = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "full.csv", prefetch=False, **KW)
    log = tmp_path / "reads.log"

    def io_error_in_the_reading_process(unit):
        if unit.index == 2 and os.getpid() != parent:
            raise InputFileError("in/apStar-x.fits", "Input/output error")

    parent = os.getpid()
    logged_reads(monkeypatch, log, io_error_in_the_reading_process)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **PROCESS)
    assert [p == parent for i, p in reads(log) if i == 2] == [False, True]  # there, then here
    assert not res.failed_units
    pd.testing.assert_frame_equal(catalogs.read_catalog(res.path), catalogs.read_catalog(full.path),
                                  check_exact=True)


def test_a_reading_process_that_dies_costs_only_its_unit(raw_model_folder, inputs, tmp_path, monkeypatch):
    """Unit 1's read kills the reading process (as a crash in a file library or the OOM killer would):
    unit 1 is recorded failed without being read here, a new process reads units 2 and 3, and every
    other row is as in a run without the crash."""
    full = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "full.csv", prefetch=False, **KW)
    log = tmp_path / "reads.log"

    def die(unit):
        if unit.index == 1:
            os._exit(9)

    logged_reads(monkeypatch, log, die)
    res = catalogs.run_catalog(raw_model_folder, inputs, tmp_path / "c.csv", **PROCESS)
    seen = reads(log)
    assert [i for i, _ in seen] == [0, 1, 2, 3]  # unit 1 never read again (here it would kill this process)
    assert seen[0][1] == seen[1][1] != seen[2][1] == seen[3][1] and os.getpid() not in {p for _, p in seen}
    assert len(res.failed_units) == 1 and "reading process stopped" in res.failed_units[0][1]
    assert res.n_rows == 5  # unit 1 held 2 files
    got, want = catalogs.read_catalog(res.path), catalogs.read_catalog(full.path)
    failed_sources = set(want["SOURCE"]) - set(got["SOURCE"])
    assert len(failed_sources) == 2 and all("2M10000002" in s or "2M10000003" in s for s in failed_sources)
    pd.testing.assert_frame_equal(got, want[~want["SOURCE"].isin(failed_sources)].reset_index(drop=True),
                                  check_exact=True)
    assert not multiprocessing.active_children()


def test_an_error_that_is_not_a_unit_failure_stops_the_run_and_the_process(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    def out_of_memory(unit):
        if unit.index == 1:
            raise MemoryError("simulated")

    logged_reads(monkeypatch, tmp_path / "reads.log", out_of_memory)
    out = tmp_path / "c.csv"
    with pytest.raises(MemoryError, match="simulated"):
        catalogs.run_catalog(raw_model_folder, inputs, out, **PROCESS)
    assert not multiprocessing.active_children() and not out.exists()
    monkeypatch.undo()  # the same command again resumes after unit 0
    res = catalogs.run_catalog(raw_model_folder, inputs, out, **PROCESS)
    assert res.units_computed == 3 and res.n_rows == 7


def test_unit_errors_come_back_from_the_process_as_they_were_raised(monkeypatch):
    problem = "truncated: 10 of 2880 bytes"
    err = pickle.loads(pickle.dumps(InputFileError("a/b.fits", problem)))
    assert isinstance(err, InputFileError) and (err.path, err.problem) == ("a/b.fits", problem)

    class UnpicklableError(OSError):
        def __reduce__(self):
            raise TypeError("no")

    def read(unit, im, settings):
        raise UnpicklableError("disk gone")

    monkeypatch.setattr(catalog_reading, "read_prepared_unit", read)
    monkeypatch.setitem(catalog_reading._child, "im", None)
    monkeypatch.setitem(catalog_reading._child, "settings", {})
    got = catalog_reading._read_in_child(None)
    assert type(got) is RuntimeError and str(got) == "UnpicklableError: disk gone"


def test_a_daemonic_process_reads_in_a_thread(monkeypatch):
    """Dask's and multiprocessing pools' workers are daemonic: they may not start a reading process."""
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert catalog_reading.reader_name(True) == catalog_reading.reader_name("process") == "thread"


def test_large_arrays_cross_in_shared_memory_and_come_back_equal(spectra):
    """What the reading process sends: the prepared network input as shared tensors (pickled as file
    descriptors, not bytes), NumPy arrays again on arrival, equal to what was prepared."""
    from multiprocessing.reduction import ForkingPickler

    from starlabels.inference.catalog_inputs import Block
    from starlabels.inference.prepared_spectra import PreparedSpectra

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8575)).astype(np.float32)  # 2.2 MB: shared
    small = rng.normal(size=(3, 10))  # pickled
    prepared = PreparedSpectra(
        64, ((slice(0, 64), (x, x + 1, np.ones(64, bool), np.ones(64), np.zeros(64))),), True,
        np.zeros(64, bool), 8575, None)
    block = Block("raw", None, flux=[small], error=[small], meta=[{}], prepared=prepared)
    read = catalog_reading._in_shared_memory(({("a", "b"): block}, []))
    sent = read[0][("a", "b")].prepared.chunks[0][1]
    assert all(isinstance(a, torch.Tensor) and a.is_shared() for a in sent[:2])
    assert isinstance(read[0][("a", "b")].flux[0], np.ndarray)
    payload = bytes(ForkingPickler.dumps(read))
    assert len(payload) < x.nbytes // 100  # descriptors, not the data
    back = catalog_reading._from_shared_memory(pickle.loads(payload))
    got = back[0][("a", "b")].prepared.chunks[0][1]
    assert all(isinstance(a, np.ndarray) for a in got)
    np.testing.assert_array_equal(got[0], x)
    np.testing.assert_array_equal(got[1], x + 1)
    np.testing.assert_array_equal(back[0][("a", "b")].flux[0], small)


FORK_AFTER_OPENMP = """
import sys, torch
from starlabels.inference import catalog, catalog_reading
torch.set_num_threads(2)
torch.ones(4096, 4096).mul_(2.0).sum()  # the parent's OpenMP pool is up when the reader is forked
catalog_reading.SHARED_MEMORY_MIN_BYTES = 0
res = catalog.run_catalog(sys.argv[1], sys.argv[2:4], sys.argv[4], files_per_unit=4, rows_per_unit=4,
                          prefetch="process", uncertainty="noise", n_samples=2)
print("rows", res.n_rows)
"""


def test_a_reader_forked_from_a_multithreaded_torch_process_does_not_hang(raw_model_folder, inputs, tmp_path):
    """The CLI runs torch on several threads before a catalog starts; the forked reader's copy into
    shared memory must not wait for the parent's OpenMP pool (it did: the CLI hung)."""
    import subprocess

    args = [sys.executable, "-c", FORK_AFTER_OPENMP, str(raw_model_folder), *map(str, inputs),
            str(tmp_path / "c.csv")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "STARLABELS_NO_PROGRESS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["rows", "7"]
