"""The library leaves its host process as it found it (issue 14): importing starlabels, calling
``predict`` and ``run_catalog`` change no thread settings, warnings filters, random states or
environment variables. Checked in a fresh interpreter (pytest itself changes warnings filters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from starlabels.errors import StarlabelsError

from .conftest import raw_spectra

SCRIPT = r'''
import json, os, random, sys, warnings
import numpy as np
import torch
# third-party imports first: their own import-time effects are not ours to check
import astropy.io.fits, astropy.table, pandas, pyarrow.parquet  # noqa: F401

torch.set_num_threads(3)          # a host's own settings, to be kept
np.random.seed(123); random.seed(123); torch.manual_seed(123)

def state():
    return {
        "threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
        "filters": [repr(f) for f in warnings.filters],
        "np_rng": repr(np.random.get_state()[1][:8].tolist()) + str(np.random.get_state()[2]),
        "torch_rng": torch.get_rng_state().sum().item(), "py_rng": hash(random.getstate()),
        "environ": dict(os.environ), "grad": torch.is_grad_enabled(),
        "dtype": str(torch.get_default_dtype()),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "np_err": np.geterr(), "recursion": sys.getrecursionlimit(),
    }

def diff(a, b):
    return {k: (a[k], b[k]) if k != "environ" else sorted(set(a[k].items()) ^ set(b[k].items()))
            for k in a if a[k] != b[k]}

model, spectra_dir, npz, out = sys.argv[1:5]
report = {}
s0 = state()
import starlabels
from starlabels.inference.catalog import run_catalog
s1 = state(); report["import"] = diff(s0, s1)
arrays = np.load(npz)
pred = starlabels.predict(model, arrays["flux"], arrays["error"], bitmask=arrays["bitmask"],
                          uncertainty="noise", n_samples=4, seed=1)
s2 = state(); report["predict"] = diff(s1, s2)
res = run_catalog(model, [spectra_dir], out, uncertainty="noise", n_samples=4, seed=1)
s3 = state(); report["run_catalog"] = diff(s2, s3)
report["rows"] = res.n_rows
report["valid"] = int(np.isfinite(pred.mean).all(axis=1).sum())
print("REPORT" + json.dumps(report, default=str))
'''


def test_import_predict_and_run_catalog_leave_the_process_state_alone(continuum_model_folder, tmp_path):
    from starlabels.io import write_apstar

    flux, error, bitmask = raw_spectra(3, seed=4)
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        write_apstar(d / f"apStar-dr17-2M3000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": str(i)})
    np.savez(tmp_path / "a.npz", flux=flux, error=error, bitmask=bitmask)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLABELS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(starlabels_src())), env.get("PYTHONPATH", "")])
    env["STARLABELS_NO_PROGRESS"] = "1"  # set before the baseline: part of the host's environment
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(continuum_model_folder), str(d),
                        str(tmp_path / "a.npz"), str(tmp_path / "c.csv")],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("REPORT"))
    report = json.loads(line[len("REPORT"):])
    assert report["rows"] == 3 and report["valid"] == 3  # the calls did their work ...
    assert report["import"] == {}, report["import"]  # ... and changed nothing in the process
    assert report["predict"] == {}, report["predict"]
    assert report["run_catalog"] == {}, report["run_catalog"]


def _write_inputs(d: Path, n: int, seed: int) -> None:
    from starlabels.io import write_apstar

    flux, error, bitmask = raw_spectra(n, seed=seed)
    d.mkdir()
    for i in range(n):
        write_apstar(d / f"apStar-dr17-2M4000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": str(i)})


def _spy_on_units(monkeypatch) -> list[int]:
    """The torch thread count each unit of a catalog run computes with."""
    import torch

    from starlabels.inference import catalog

    seen: list[int] = []
    real = catalog.run_unit

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog, "run_unit", spy)
    return seen


def test_a_dask_partition_leaves_the_worker_thread_setting_alone(continuum_model_folder, tmp_path,
                                                                 monkeypatch):
    """Without a TorchThreads plugin a task never sets torch threads (process state): the worker's
    owner does."""
    import torch

    from starlabels.inference import catalog, catalog_inputs, catalog_parts, distributed

    _write_inputs(tmp_path / "in", 2, seed=6)
    items, _ = catalog_inputs.expand_inputs([tmp_path / "in"])
    units, _ = catalog_inputs.plan_units(items, files_per_unit=1)
    out = tmp_path / "c.csv"
    catalog_parts.parts_dir(out).mkdir()
    seen = _spy_on_units(monkeypatch)
    torch.set_num_threads(2)
    assert distributed.registered_torch_threads() is None
    summary = distributed.run_partition(str(continuum_model_folder), units, str(out), catalog.run_settings())
    assert summary["rows"] == 2 and seen == [2, 2] and torch.get_num_threads() == 2


def _threads_of_a_new_thread() -> int:
    """What a thread started now begins with (torch keeps the setting per thread once used)."""
    import torch

    box: list[int] = []
    t = threading.Thread(target=lambda: box.append(torch.get_num_threads()))
    t.start()
    t.join()
    return box[0]


def test_torch_threads_plugin_sets_the_workers_threads_for_the_run_and_gives_them_back(
        continuum_model_folder, tmp_path, monkeypatch):
    """On a cluster whose workers are threads of this process (processes=False) run_distributed
    leaves the thread setting alone, unless torch_threads asks for a TorchThreads plugin, which
    applies to every task of the run and is unregistered after it (the setting comes back)."""
    import torch
    from distributed import Client, LocalCluster

    from starlabels.inference import distributed

    _write_inputs(tmp_path / "in", 3, seed=7)
    seen = _spy_on_units(monkeypatch)
    torch.set_num_threads(3)

    def plugins(client) -> list[str]:
        return [n for names in client.run(lambda dask_worker: list(dask_worker.plugins)).values()
                for n in names if n.startswith("starlabels")]

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        res = distributed.run_distributed(continuum_model_folder, [tmp_path / "in"], tmp_path / "a.csv",
                                          client=client, files_per_unit=1)
        assert res.n_rows == 3 and seen == [3, 3, 3] and _threads_of_a_new_thread() == 3
        seen.clear()
        res = distributed.run_distributed(continuum_model_folder, [tmp_path / "in"], tmp_path / "b.csv",
                                          client=client, files_per_unit=1, torch_threads=2)
        assert res.n_rows == 3 and seen == [2, 2, 2]  # every task ran with the plugin's setting ...
        assert plugins(client) == [] and distributed.registered_torch_threads() is None
        assert torch.get_num_threads() == 3 and _threads_of_a_new_thread() == 3  # ... and it is undone
        seen.clear()
        distributed.run_distributed(continuum_model_folder, [tmp_path / "in"], tmp_path / "c.csv",
                                    client=client, files_per_unit=1)
        assert seen == [3, 3, 3]  # the workers' executor threads have their own setting back
    with pytest.raises(StarlabelsError, match="positive integer"):
        distributed.TorchThreads(0)


def starlabels_src() -> Path:
    import starlabels

    return Path(starlabels.__file__).resolve().parents[1]
