"""Dask for real (issue 14): worker *processes* — a LocalCluster(processes=True) and an external
``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1 — give exactly the single-process
catalog, also when a worker is SIGKILLed mid-run (nothing lost, nothing duplicated)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from starlabels.inference import catalog as catalogs
from starlabels.inference import distributed as distributed_inference
from starlabels.inference.catalog_parts import parts_dir

from .conftest import raw_spectra

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))
KW = dict(uncertainty="noise", n_samples=8, seed=4, files_per_unit=1)


@pytest.fixture(scope="module")
def star_dir(tmp_path_factory):
    from starlabels.io import write_apstar

    flux, error, bitmask = raw_spectra(10, seed=9)
    flux[3] = np.nan  # an invalid star: its row is kept, flagged
    d = tmp_path_factory.mktemp("dask") / "in"
    d.mkdir()
    for i in range(10):
        write_apstar(d / f"apStar-dr17-2M2000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M2000000{i}", "RA": float(i), "DEC": 1.0})
    (d / "apStar-dr17-2M2000000x.fits").write_bytes(b"SIMPLE  =  T")  # unreadable: listed
    return d


@contextlib.contextmanager
def _on_torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_process_catalog(model, star_dir, out, threads: int):
    with _on_torch_threads(threads):
        return catalogs.run_catalog(model, [star_dir], out, **KW)


# A module fixture is made before the function-scoped fixtures that set one torch thread, so each
# reference sets its thread count itself: the float32 kernels sum in another order on another
# thread count (a 7512-input Linear at batch 8 splits its sum over two threads), and the noise σ of
# this random-weight model (~1e-4 dex) shows that rounding at pandas' 1e-5 relative tolerance.
@pytest.fixture(scope="module")
def single(continuum_model_folder, star_dir, tmp_path_factory):
    """The single-process catalog every Dask run on one torch thread per task must reproduce."""
    out = tmp_path_factory.mktemp("single") / "single.parquet"
    return _single_process_catalog(continuum_model_folder, star_dir, out, threads=1)


@pytest.fixture(scope="module")
def single_two_threads(continuum_model_folder, star_dir, tmp_path_factory):
    """The same on two torch threads: what a run with ``torch_threads=2`` must reproduce."""
    out = tmp_path_factory.mktemp("single2") / "single.parquet"
    return _single_process_catalog(continuum_model_folder, star_dir, out, threads=2)


def _same(res, single):
    assert res.n_rows == single.n_rows == 10 and not res.failed_units
    pd.testing.assert_frame_equal(catalogs.read_catalog(res.path), catalogs.read_catalog(single.path))
    assert res.skipped == single.skipped and len(res.skipped) == 1


def test_catalogs_on_one_and_two_torch_threads_agree_to_float32_rounding(single, single_two_threads):
    """What README promises for another thread count: every label column (value and σ parts) within
    1e-6 of the label's scale (its largest |value|, at least 1); every other column identical."""
    one, two = catalogs.read_catalog(single.path), catalogs.read_catalog(single_two_threads.path)
    assert list(one.columns) == list(two.columns) and len(one) == 10
    labels = ["TEFF", "LOGG", "FE_H"]
    for column in one.columns:
        label = next((lab for lab in labels if column == lab or column.startswith(f"{lab}_ERR")), None)
        if label is None:
            pd.testing.assert_series_equal(one[column], two[column])
            continue
        scale = max(1.0, float(np.nanmax(np.abs(one[label]))))
        a, b = one[column].to_numpy(np.float64), two[column].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) <= 1e-6 * scale, column


def test_local_cluster_of_worker_processes_matches_the_single_process_run(
    continuum_model_folder, star_dir, single, tmp_path
):
    res = distributed_inference.run_distributed(
        continuum_model_folder,
        [star_dir],
        tmp_path / "dist.parquet",
        workers=2,
        processes=True,
        threads_per_worker=1,
        partitions_per_worker=2,
        **KW,
    )
    _same(res, single)


@pytest.fixture
def external_cluster(tmp_path):
    """``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1, stopped after the test."""
    src = str(Path(catalogs.__file__).parents[2])  # this checkout's package, in the workers too
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "STARLABELS_NO_PROGRESS": "1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    sched_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        "--scheduler-file",
                        str(sched_file),
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--death-timeout",
                        "60",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        from distributed import Client

        client = Client(scheduler_file=str(sched_file), timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield client
        client.close()
    finally:
        # nothing of the test depends on a graceful stop (which took the full 5 s grace every time: a
        # nanny restarting its worker ignores SIGTERM for its death timeout): each process group — a
        # nanny and its worker, or the scheduler — is killed at once
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_external_scheduler_and_two_worker_processes_match_the_single_process_run(
    continuum_model_folder, star_dir, single, tmp_path, external_cluster
):
    address = external_cluster.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    res = distributed_inference.run_distributed(
        continuum_model_folder,
        [star_dir],
        tmp_path / "ext.parquet",
        scheduler=address,
        partitions_per_worker=2,
        **KW,
    )
    _same(res, single)
    pids = external_cluster.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()  # the work ran in the worker processes


def test_torch_threads_on_an_external_cluster_apply_for_the_run_only(
    continuum_model_folder, star_dir, single_two_threads, tmp_path, external_cluster
):
    """``starlabels predict --scheduler`` passes --threads-per-worker as ``torch_threads``: a
    TorchThreads plugin for the run, unregistered after it, so the workers get their setting back."""
    import torch

    client = external_cluster
    tasks_before = [client.submit(torch.get_num_threads, pure=False).result() for _ in range(4)]
    loops_before = client.run(torch.get_num_threads)
    res = distributed_inference.run_distributed(
        continuum_model_folder, [star_dir], tmp_path / "threads.parquet", scheduler=client.scheduler.address,
        torch_threads=2, **KW,
    )
    _same(res, single_two_threads)
    assert client.run(torch.get_num_threads) == loops_before
    assert [client.submit(torch.get_num_threads, pure=False).result() for _ in range(4)] == tasks_before
    names = client.run(lambda dask_worker: [n for n in dask_worker.plugins if n.startswith("starlabels")])
    assert all(v == [] for v in names.values())


def test_a_worker_sigkilled_mid_run_leaves_a_complete_catalog(
    continuum_model_folder, star_dir, single, tmp_path, external_cluster
):
    out = tmp_path / "killed.parquet"
    pdir = parts_dir(out)
    pids = external_cluster.run(os.getpid)
    killed: list[int] = []

    def kill_one_worker_after_the_first_unit():
        deadline = time.time() + 120
        while time.time() < deadline:
            if len(list(pdir.glob("unit-*.json"))) >= 1:
                pid = sorted(pids.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_after_the_first_unit)
    killer.start()
    res = distributed_inference.run_distributed(
        continuum_model_folder, [star_dir], out, client=external_cluster, partitions_per_worker=1, **KW
    )
    killer.join()
    assert killed, "the worker was not killed during the run"
    _same(res, single)  # nothing lost
    df = catalogs.read_catalog(out)
    assert df["APOGEE_ID"].is_unique  # nothing duplicated


def _predict_cli(*args: str):
    from click.testing import CliRunner

    from starlabels.cli.main import cli

    return CliRunner().invoke(cli, ["predict", *args, "--uncertainty", "noise", "--n-samples", "8",
                                    "--seed", "4", "--files-per-unit", "1"])


def test_predict_threads_sets_the_process_threads_and_gives_the_catalog_of_that_count(
    continuum_model_folder, star_dir, single_two_threads, tmp_path
):
    """``starlabels predict --threads 2`` in a one-thread process: the process runs on two torch
    threads (the CLI owns its process) and writes the two-thread catalog bit for bit."""
    import torch

    assert torch.get_num_threads() == 1  # set by the autouse fixture
    out = tmp_path / "cli.parquet"
    r = _predict_cli(str(continuum_model_folder), str(star_dir), "-o", str(out), "--threads", "2")
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == 2
    pd.testing.assert_frame_equal(catalogs.read_catalog(out), catalogs.read_catalog(single_two_threads.path))


def test_predict_threads_with_workers_is_a_usage_error(continuum_model_folder, star_dir, tmp_path):
    r = _predict_cli(str(continuum_model_folder), str(star_dir), "-o", str(tmp_path / "x.parquet"),
                     "--threads", "2", "--workers", "2")
    assert r.exit_code == 2
    assert "use --threads-per-worker" in r.output and not (tmp_path / "x.parquet").exists()
