"""Fault injection: SIGKILL ``starlabels predict``, ``ingest`` and ``train`` (and a Dask worker) at
random moments, resume, and compare with an uninterrupted run (issue 14).

For each command an uninterrupted reference run is timed; then each trial starts the command, sends
SIGKILL after a uniformly random delay in [0.2 s, reference wall time] (so kills land during start-up,
inside a unit / a batch / an epoch, during checkpoints and during the final assembly — not only
between units), and runs the same command again until it succeeds (the resume). The resumed output
is compared with the reference:

- predict: the catalog file (FITS) and its skipped list, byte for byte; rows by APOGEE_ID;
- ingest: every HDF5 dataset array and the ``n_rows`` attribute, byte for byte; rows by ``source``;
- train: every tensor of ``model.safetensors`` bit for bit (identical weights), the training history;
- Dask: an external ``dask scheduler`` + 2 ``dask worker`` processes on 127.0.0.1; one worker process is
  SIGKILLed at a random moment of a distributed catalog run, which must complete by itself.

It also starts two runs on the same output at once: the second must fail with a clear error and
the first must finish with the reference output.

Usage::

    python bench/fault_injection.py --trials 20 --dask-trials 5 --out bench/results/fault_injection.md

Setup (small, so the ≥ 20 trials per command fit in minutes on 2 CPU cores): 16 apStar files of
synthetic spectra; a BayesianCNN (raw-flux preprocessing, random weights) for predict; a 96-row
HDF5 set and a 12-epoch BayesianCNN training for train. One torch thread everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BIN = str(Path(sys.executable).with_name("starlabels"))
DASK = str(Path(sys.executable).with_name("dask"))
ENV = {**os.environ, "STARLABELS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore", "STARLABELS_INGEST_COMMIT_SECONDS": "0.5"}  # ingest commits mid-run
N_FILES = 16
P_TRAIN = 8575


# ------------------------------------------------------------------------------------------------
# inputs


def spectra(n: int, seed: int, snr: float = 100.0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 8575)
    depth = rng.uniform(0.05, 0.5, (n, 1))
    lines = np.exp(-0.5 * ((x[None, :] % 0.01 - 0.005) / 0.0008) ** 2)
    flux = 100.0 * (1 + 0.1 * x[None, :]) * (1 - depth * lines)
    error = flux / snr
    flux = flux + rng.normal(size=flux.shape) * error
    return flux, error, np.zeros(flux.shape, np.int64), depth[:, 0]


def make_inputs(root: Path) -> dict[str, Path]:
    import torch

    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.io import write_apstar
    from starlabels.models import build_network
    from starlabels.models.folder import TrainedModel
    from starlabels.preprocess.pipeline import PreprocessConfig

    flux, error, bitmask, _ = spectra(N_FILES, seed=1)
    flux[5] = np.nan  # an invalid star: its row is kept, flagged
    files = root / "apstar"
    files.mkdir()
    for i in range(N_FILES):
        write_apstar(files / f"apStar-dr17-2M{i:08d}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M{i:08d}", "RA": float(i), "DEC": -1.0})
    (files / "apStar-dr17-2Mtruncated.fits").write_bytes(b"SIMPLE  =                    T")

    torch.manual_seed(0)
    net = build_network("bcnn", n_labels=3, n_pixels=8575, dropout=0.1)
    net.eval()
    model = TrainedModel(net, ["TEFF", "LOGG", "FE_H"], LabelScaler([5000.0, 3.0, 0.0], [500.0, 1.0, 0.3]),
                         SpectrumScaler("none"), ["K", "dex", "dex"],
                         preprocessing=PreprocessConfig(kind="raw").to_dict())
    model.save(root / "model")

    n = 96
    f, e, b, depth = spectra(n, seed=2)
    labels = np.stack([4000 + 4000 * depth, 1 + 6 * depth], 1).astype(np.float32)
    with DatasetWriter(root / "train.h5", P_TRAIN, "apstar", ["TEFF", "LOGG"], compression=None,
                       chunk_rows=16) as w:
        w.append(f.astype(np.float32), e.astype(np.float32), b, labels=labels,
                 label_errors=np.full_like(labels, 0.05),
                 meta={"apogee_id": [f"2M{i:08d}" for i in range(n)]})
    (root / "train.toml").write_text(f"""
[data]
files = ["{root / 'train.h5'}"]
label_names = ["TEFF", "LOGG"]
chunk_rows = 16
buffer_chunks = 2
[data.split]
method = "random"
fractions = [0.7, 0.2, 0.1]
[model]
architecture = "bcnn"
spectrum_scaling = "centered"
[model.kwargs]
dropout = 0.1
hidden = [16, 8]
[preprocess]
kind = "raw"
[optimiser]
learning_rate = 0.002
[training]
loss = "robust"
epochs = 12
patience = 20
batch_size = 16
seed = 3
device = "cpu"
""")
    return {"files": files, "model": root / "model", "config": root / "train.toml"}


# ------------------------------------------------------------------------------------------------
# the three commands: (argv for a run, output paths, comparison)


def predict_cmd(inp, work: Path) -> tuple[list[str], Path]:
    out = work / "cat.fits"
    return [BIN, "predict", str(inp["model"]), str(inp["files"]), "-o", str(out), "--files-per-unit", "2",
            "--uncertainty", "noise", "--n-samples", "4", "--seed", "1"], out


def ingest_cmd(inp, work: Path) -> tuple[list[str], Path]:
    out = work / "data.h5"
    return [BIN, "ingest", str(inp["files"]), "-o", str(out), "--batch-size", "3"], out


def train_cmd(inp, work: Path, resume: bool = False) -> tuple[list[str], Path]:
    out = work / "model"
    argv = [BIN, "train", str(inp["config"]), "--output", str(out)]
    if resume:
        argv.append("--resume" if (out / "checkpoint.pt").exists() else "--overwrite")
    return argv, out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def catalog_rows(path: Path) -> list[str]:
    from starlabels.inference.catalog import read_catalog

    return read_catalog(path)["APOGEE_ID"].tolist()


def compare_predict(ref: Path, out: Path) -> dict:
    same = out.exists() and sha(out) == sha(ref) and sha(Path(str(out) + ".skipped.tsv")) == sha(
        Path(str(ref) + ".skipped.tsv"))
    rows_ref, rows = catalog_rows(ref), catalog_rows(out) if out.exists() else []
    return {"identical": same, "rows": len(rows_ref), "lost": len(set(rows_ref) - set(rows)),
            "duplicated": len(rows) - len(set(rows))}


def h5_arrays(path: Path) -> dict[str, bytes]:
    import h5py

    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                v = np.asarray(obj[()])
                # text columns come back as object arrays (pointers): compare their values instead
                raw = repr(v.tolist()).encode() if v.dtype == object else v.tobytes()
                out[name] = raw + str(obj.dtype).encode()
        f.visititems(visit)
        out["@n_rows"] = str(f.attrs.get("n_rows")).encode()
    return out


def compare_ingest(ref: Path, out: Path) -> dict:
    import h5py

    a = h5_arrays(ref)
    try:
        b = h5_arrays(out)
    except (OSError, KeyError):
        b = {}
    with h5py.File(ref, "r") as f:
        src_ref = [s.decode() if isinstance(s, bytes) else str(s) for s in f["meta/source"][()]]
    src = []
    if b:
        with h5py.File(out, "r") as f:
            src = [s.decode() if isinstance(s, bytes) else str(s) for s in f["meta/source"][()]]
    return {"identical": a == b, "rows": len(src_ref), "lost": len(set(src_ref) - set(src)),
            "duplicated": len(src) - len(set(src))}


def compare_train(ref: Path, out: Path) -> dict:
    """Every tensor of every ``*.safetensors`` file (weights + scalers, coverage, domain shift) bit
    for bit, and the training history (``history.csv`` without its wall-time column)."""
    import csv

    from safetensors.numpy import load_file

    def history(folder: Path) -> list[dict]:
        with open(folder / "history.csv", newline="") as fh:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]

    try:
        names = sorted(p.name for p in ref.glob("*.safetensors"))
        same = names == sorted(p.name for p in out.glob("*.safetensors")) and bool(names)
        for name in names if same else []:
            a, b = load_file(str(ref / name)), load_file(str(out / name))
            same &= a.keys() == b.keys() and all(
                np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        hist_a, hist_b = history(ref), history(out)
        same = same and hist_a == hist_b
        epochs = len(hist_a)
    except (OSError, ValueError) as exc:
        print("train compare:", exc)
        same, epochs = False, 0
    return {"identical": same, "rows": epochs, "lost": 0 if same else 1, "duplicated": 0}


# ------------------------------------------------------------------------------------------------
# runs


def run(argv: list[str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=ENV, capture_output=True, text=True)
    return r.returncode, time.perf_counter() - t0, r.stdout + r.stderr


def kill_at(argv: list[str], delay: float) -> bool:
    """Start ``argv``, SIGKILL it after ``delay`` s. True when it was killed (still running)."""
    p = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def trials_for(name: str, make, compare, inp, root: Path, n: int, rng: random.Random) -> dict:
    ref_dir = root / f"{name}-ref"
    ref_dir.mkdir()
    argv, ref = make(inp, ref_dir)
    rc, wall, text = run(argv)
    if rc != 0:
        raise SystemExit(f"{name}: reference run failed ({rc}):\n{text[-2000:]}")
    stats = {"trials": 0, "killed": 0, "resumes": 0, "rows": 0, "lost": 0, "duplicated": 0, "identical": 0,
             "wall": wall, "delays": []}
    for t in range(n):
        work = root / f"{name}-{t}"
        work.mkdir()
        argv, out = make(inp, work)
        delay = rng.uniform(0.2, wall)
        killed = kill_at(argv, delay)
        stats["trials"] += 1
        stats["killed"] += killed
        stats["delays"].append(round(delay, 2))
        for _attempt in range(3):  # the resume: the same command again (train: --resume when possible)
            argv2 = make(inp, work, resume=True)[0] if name == "train" else argv
            rc, _, text = run(argv2)
            stats["resumes"] += 1
            if rc == 0:
                break
            print(f"{name} trial {t}: resume exited {rc}: {text[-400:]}")
        c = compare(ref, out)
        stats["rows"] += c["rows"]
        stats["lost"] += c["lost"]
        stats["duplicated"] += c["duplicated"]
        stats["identical"] += bool(c["identical"])
        print(f"{name} trial {t}: kill after {delay:.2f}s (killed={killed}) → {c}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return stats


def lock_check(name: str, make, compare, inp, root: Path, ref_dir: Path) -> str:
    """Two runs on one output at once: while the first (a CLI process) holds the output's lock, a
    second run (the same command, through the library in this already-started process, so it does
    not lose the race in its start-up) must fail clearly; the first must end with the reference.
    The first is stopped (SIGSTOP) from the moment its lock file appears until the second is done."""
    from starlabels.data.ingest import ingest_files
    from starlabels.errors import StarlabelsError
    from starlabels.inference.catalog import run_catalog
    from starlabels.output_lock import lock_path
    from starlabels.training.config import load_config
    from starlabels.training.from_config import train_from_config

    work = root / f"{name}-lock"
    work.mkdir()
    argv, out = make(inp, work)
    first = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not lock_path(out).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: the second run must meet it
    try:
        if name == "predict":
            run_catalog(inp["model"], [inp["files"]], out, files_per_unit=2, uncertainty="noise",
                        n_samples=4, seed=1)
        elif name == "ingest":
            ingest_files([inp["files"]], out, batch_size=3)
        else:
            cfg = load_config(inp["config"])
            cfg.override(output=out)
            train_from_config(cfg)
        second = "second run was NOT refused"
    except StarlabelsError as exc:
        second = f"second run refused: {str(exc)[:160]}"
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate()
    _, ref = make(inp, ref_dir)
    c = compare(ref, out)
    return f"{second}; first run exit {first.returncode}, output identical: {c['identical']}"


def dask_trials(inp, root: Path, n: int, rng: random.Random) -> dict:
    from distributed import Client

    from starlabels.inference import catalog as catalogs
    from starlabels.inference import distributed as distributed_inference

    kw = dict(uncertainty="noise", n_samples=4, seed=1, files_per_unit=1)
    ref = catalogs.run_catalog(inp["model"], [inp["files"]], root / "dask-ref.parquet", **kw)
    sched_file = root / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    stats = {"trials": 0, "killed": 0, "resumes": 0, "rows": 0, "lost": 0, "duplicated": 0, "identical": 0,
             "delays": []}
    try:
        while not sched_file.exists():
            time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [DASK, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--nworkers", "1",
                 "--host", "127.0.0.1", "--no-dashboard"], env=ENV,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = Client(scheduler_file=str(sched_file), timeout=60)
        client.wait_for_workers(2, timeout=120)
        for warm in range(2):  # the first loads the model on each worker; time the second
            t0 = time.perf_counter()
            distributed_inference.run_distributed(
                inp["model"], [inp["files"]], root / f"dask-warm{warm}.parquet", client=client, **kw
            )
            wall = time.perf_counter() - t0
        for t in range(n):
            client.wait_for_workers(2, timeout=120)  # the nanny restarts a killed worker
            out = root / f"dask-{t}.parquet"
            pids = sorted(client.run(os.getpid).values())
            delay = rng.uniform(0.05, wall)
            killed = []

            done = threading.Event()

            def kill(pids=pids, delay=delay, killed=killed, done=done):
                if not done.wait(delay):  # the run is still going: kill a worker now
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])

            th = threading.Thread(target=kill)
            th.start()
            res = distributed_inference.run_distributed(
                inp["model"], [inp["files"]], out, client=client, **kw
            )
            done.set()
            th.join()
            a, b = catalog_rows_any(ref.path), catalog_rows_any(out)
            same = (
                catalogs.read_catalog(out).equals(catalogs.read_catalog(ref.path))
                and res.skipped == ref.skipped
            )
            stats["trials"] += 1
            stats["killed"] += bool(killed)
            stats["resumes"] += 0
            stats["rows"] += len(a)
            stats["lost"] += len(set(a) - set(b))
            stats["duplicated"] += len(b) - len(set(b))
            stats["identical"] += same
            stats["delays"].append(round(delay, 2))
            print(
                f"dask trial {t}: worker kill after {delay:.2f}s (killed={bool(killed)}) → identical={same}",
                flush=True,
            )
        stats["wall"] = wall
        client.close()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    return stats


def catalog_rows_any(path) -> list[str]:
    from starlabels.inference.catalog import read_catalog

    return read_catalog(path)["APOGEE_ID"].tolist()


# ------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="kill points per command (predict, ingest, train)")
    ap.add_argument("--dask-trials", type=int, default=5, help="worker kills in distributed runs")
    ap.add_argument("--only", nargs="*", default=["predict", "ingest", "train", "dask"])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", type=Path, default=None, help="write the result table (Markdown) here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ["STARLABELS_NO_PROGRESS"] = "1"
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="starlabels-faults-"))
    try:
        inp = make_inputs(root)
        results, locks = {}, {}
        specs = {
            "predict": (predict_cmd, compare_predict),
            "ingest": (ingest_cmd, compare_ingest),
            "train": (train_cmd, compare_train),
        }
        for name in ("predict", "ingest", "train"):
            if name in args.only:
                make, compare = specs[name]
                results[name] = trials_for(name, make, compare, inp, root, args.trials, rng)
                locks[name] = lock_check(name, make, compare, inp, root, root / f"{name}-ref")
        if "dask" in args.only and args.dask_trials:
            results["dask worker kill"] = dask_trials(inp, root, args.dask_trials, rng)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        "# Fault injection (issue 14)",
        "",
        f"`python bench/fault_injection.py --trials {args.trials} --dask-trials {args.dask_trials} "
        f"--seed {args.seed}`; 1 torch thread, CPU. Kill delays uniform in [0.2 s, reference wall time].",
        "",
        "| command | trials | killed mid-run | resumes | rows compared | rows lost | rows duplicated | "
        "identical to uninterrupted | reference wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        lines.append(
            f"| {name} | {s['trials']} | {s['killed']} | {s['resumes']} | {s['rows']} | "
            f"{s['lost']} | {s['duplicated']} | {s['identical']}/{s['trials']} | "
            f"{s.get('wall', float('nan')):.1f} |"
        )
    lines += [
        "",
        "Rows compared: catalog rows (predict, Dask), dataset rows (ingest), epochs of the "
        "training history (train; weights compared tensor by tensor, bit for bit).",
        "",
        "Two runs on the same output at once:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in locks.items()]
    lines += ["", "Kill delays (s):", ""]
    lines += [f"- {k}: {s['delays']}" for k, s in results.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
