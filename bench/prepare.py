"""Per-chunk preprocessing in front of the network: ``prepare_chunk`` before/after (issue 17, must-have 3).

    python bench/prepare.py --before /path/to/old/checkout [--n 1024] [--rounds 5] [--out MD]

``starlabels.inference.prepare.prepare_chunk`` (pixel rejection, SNR, the model's preprocessing,
masked fraction, the float32 network input) on one chunk of N synthetic apStar spectra
(``bench/continuum.py``'s ``make_spectra``, seed 0, bitmask int32), for the two benchmark networks'
configs (``bench/end_to_end.py``):

* ``raw`` — APOGEE Net's ``PreprocessConfig(kind="raw")`` (8575 px in and out);
* ``continuum`` — the BCNN's ``PreprocessConfig(kind="continuum", continuum_pixels=…)`` (8575 px in,
  7514 out); its continuum fit itself (``continuum_normalise``) is timed as its own row.

The last rows of the chunk are edge cases (NaN-only, zero errors, fully masked, one dead detector,
±inf flux and errors, one usable pixel, errors ≥ 1e8, negative flux) so that the outputs compared
below cover them. The same input arrays (written once to a temporary folder) go to two worker
processes, one importing the package from ``--before`` (e.g. a ``git worktree`` or ``git archive``
of the commit before the change) and one from this checkout; their runs alternate (3 turns, each
``--rounds`` calls per row; best call kept), with OMP/OpenBLAS/MKL threads = 1 and nothing else
running in the workers (numpy's own loops are single-threaded). The outputs ``x, xe, ok, snr,
masked`` of every row are compared bit for bit (dtype and bytes) between the two. Last, how long
another thread waits for the GIL while ``prepare_chunk`` loops in the background (:func:`gil_wait`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from worker_process import run_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DTYPES = ("float32", "float64")
TURNS = 3


def make_input(n: int, folder: Path) -> None:
    """N synthetic apStar spectra (float64 master copy) with edge-case rows, and the continuum mask."""
    sys.path.insert(0, str(HERE))
    from continuum import make_spectra
    from starlabels.preprocess.bitmask import PIXMASK_BITS

    flux, error, bitmask, mask = make_spectra(n, 0)
    badpix = 1 << PIXMASK_BITS["BADPIX"]
    k = n - 1
    flux[k] = np.nan  # NaN-only
    error[k - 1] = 0.0  # zero errors
    bitmask[k - 2] = badpix  # fully masked
    bitmask[k - 3, 246:3274] = badpix  # the blue detector dead
    flux[k - 4, 1000:1010] = np.inf
    flux[k - 4, 2000:2005] = -np.inf
    error[k - 4, 3000:3010] = np.inf
    error[k - 4, 4000:4003] = np.nan
    bitmask[k - 5] = badpix
    bitmask[k - 5, 5000] = 0  # one usable pixel
    error[k - 6, 6500:6700] = 5e8  # usable, but at/above the network's BAD_ERROR
    flux[k - 7, 300:7000] *= -1  # negative flux
    np.savez(folder / "input.npz", flux=flux, error=error, bitmask=bitmask, mask=mask)


def configs(mask: np.ndarray) -> dict:
    from starlabels.preprocess.pipeline import PreprocessConfig

    return {
        "raw": PreprocessConfig(kind="raw"),
        "continuum": PreprocessConfig(kind="continuum", continuum_pixels=np.flatnonzero(mask).tolist()),
    }


def worker(folder: Path, tag: str, rounds: int) -> None:
    """Time every row with the package on sys.path; write the outputs (first turn) and the times."""
    from types import SimpleNamespace

    from starlabels.inference.prepare import prepare_chunk
    from starlabels.preprocess.continuum import continuum_normalise

    data = np.load(folder / "input.npz")
    mask = data["mask"]
    cfgs = configs(mask)
    times: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for dtype in DTYPES:
        f, e, b = data["flux"].astype(dtype), data["error"].astype(dtype), data["bitmask"]
        for name, cfg in cfgs.items():
            im = SimpleNamespace(preprocessing=cfg, n_pixels=cfg.n_pixels)
            best = np.inf
            for _ in range(rounds):
                t0 = time.perf_counter()
                out = prepare_chunk(im, f, e, b, False, True)
                best = min(best, time.perf_counter() - t0)
            times[f"{name} {dtype}"] = best
            for key, arr in zip(("x", "xe", "ok", "snr", "masked"), out, strict=True):
                outputs[f"{name} {dtype} {key}"] = arr
        if dtype == "float32":  # the continuum fit alone (not this work's code), for scale
            good = slice(0, len(f) - 8)
            best = np.inf
            for _ in range(rounds):
                t0 = time.perf_counter()
                continuum_normalise(f[good], e[good], b[good], continuum_mask=mask)
                best = min(best, time.perf_counter() - t0)
            times["continuum_normalise alone (N-8 rows) float32"] = best
    f, e, b = data["flux"].astype("float32"), data["error"].astype("float32"), data["bitmask"]
    for name, cfg in cfgs.items():
        im = SimpleNamespace(preprocessing=cfg, n_pixels=cfg.n_pixels)
        alone, beside, p99 = gil_wait(lambda im=im: prepare_chunk(im, f, e, b, False, True))
        times[f"{name} gil alone"], times[f"{name} gil beside"], times[f"{name} gil p99"] = alone, beside, p99
    out_file = folder / f"out_{tag}.npz"
    if not out_file.exists():
        np.savez(out_file, **outputs)
    print(json.dumps(times))


def gil_wait(job, seconds: float = 1.5) -> tuple[float, float, float]:
    """How long a thread waits for the GIL while ``job`` runs over and over in a background thread
    (as the catalog's reading stage will run ``prepare_chunk`` next to the network thread, which
    needs the GIL between kernels). This thread sleeps 0.5 ms at a time (the GIL released, like a
    torch kernel) and records how late it gets back: returns the mean lateness alone, the mean
    beside the job and its 99th percentile beside the job, in seconds. A job that holds the GIL
    for long stretches makes the lateness grow; the second core's share of the machine does not."""
    import threading

    def probe(duration: float) -> np.ndarray:
        late, t_end = [], time.perf_counter() + duration
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            time.sleep(0.0005)
            late.append(time.perf_counter() - t0 - 0.0005)
        return np.array(late)

    alone = probe(seconds / 2)
    stop = threading.Event()

    def background() -> None:
        while not stop.is_set():
            job()

    thread = threading.Thread(target=background)
    thread.start()
    try:
        time.sleep(0.1)
        beside = probe(seconds)
    finally:
        stop.set()
        thread.join()
    return float(alone.mean()), float(beside.mean()), float(np.quantile(beside, 0.99))


def run_tag(folder: Path, tag: str, src: Path, rounds: int) -> dict[str, float]:
    """The worker ``tag`` (one thread) on the code in ``src``."""
    return run_worker(__file__, ["--worker", tag, "--folder", str(folder), "--rounds", str(rounds)],
                      src=src, one_thread=True)


def identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (so NaN payloads and the sign of zero count too)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
        np.ascontiguousarray(b).tobytes()


def commit_note() -> str:
    """`` at <commit>`` of this checkout (`` (+ uncommitted changes)`` when it has any), or ''."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" at {head}" + (" (+ uncommitted changes in src/)" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="checkout (or its src/) of the code before the change")
    ap.add_argument("--before-name", help="how to name --before in the report (e.g. its commit)")
    ap.add_argument("--n", type=int, default=1024, help="spectra per chunk (default 1024)")
    ap.add_argument("--rounds", type=int, default=5, help="calls per row and turn (best kept)")
    ap.add_argument("--out", type=Path, help="also write the report (markdown) here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.folder, args.worker, args.rounds)
        return
    if args.before is None:
        ap.error("--before is required")
    before = args.before / "src" if (args.before / "src" / "starlabels").is_dir() else args.before
    after = ROOT / "src"
    with tempfile.TemporaryDirectory(prefix="starlabels_prepare_") as tmp:
        folder = Path(tmp)
        make_input(args.n, folder)
        best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
        load0 = os.getloadavg()[0]
        for _ in range(TURNS):
            for tag, src in (("before", before), ("after", after)):
                for key, t in run_tag(folder, tag, src, args.rounds).items():
                    best[tag][key] = min(best[tag].get(key, np.inf), t)
        load1 = os.getloadavg()[0]
        old, new = np.load(folder / "out_before.npz"), np.load(folder / "out_after.npz")
        same = {key: identical(old[key], new[key]) for key in old.files}
    lines = [
        "## `prepare_chunk` before/after (bench/prepare.py)",
        "",
        f"N = {args.n} spectra per chunk (8575-px apStar grid, the last 8 rows edge cases), bitmask int32, "
        f"1 thread (numpy loops; OMP/OpenBLAS/MKL_NUM_THREADS=1), input dtype as in each row; before = "
        f"`{args.before_name or before}`, after = `{after}`{commit_note()}; each worker process alternates "
        f"{TURNS} times, best of "
        f"{args.rounds} calls per turn; load average {load0:.2f} → {load1:.2f} (2-core machine, shared).",
        "",
        "| row | dtype | before ms | after ms | after ms/spectrum | before/after |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key in best["after"]:
        if " gil " in key:
            continue
        name, dtype = key.rsplit(" ", 1)
        b_ms, a_ms = 1e3 * best["before"][key], 1e3 * best["after"][key]
        label = f"prepare_chunk, {name}" if name in ("raw", "continuum") else name
        lines.append(f"| {label} | {dtype} | {b_ms:.1f} | {a_ms:.1f} | {a_ms / args.n:.4f} | "
                     f"{b_ms / a_ms:.2f} |")
    lines += [
        "",
        "GIL: a probe thread sleeps 0.5 ms at a time (GIL released, like a torch kernel) alone, then while "
        "`prepare_chunk` (float32) loops in a background thread; how late it gets the GIL back, ms "
        "(lowest of the turns):",
        "",
        "| config | alone, before | alone, after | mean beside prepare, before | after | "
        "p99 beside, before | after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("raw", "continuum"):
        a, m, q = (f"{name} gil {k}" for k in ("alone", "beside", "p99"))
        lines.append(f"| {name} | {1e3 * best['before'][a]:.3f} | {1e3 * best['after'][a]:.3f} | "
                     f"{1e3 * best['before'][m]:.3f} | {1e3 * best['after'][m]:.3f} | "
                     f"{1e3 * best['before'][q]:.2f} | {1e3 * best['after'][q]:.2f} |")
    bad = [k for k, v in same.items() if not v]
    verdict = "yes" if not bad else "NO: " + ", ".join(bad)
    lines += ["", f"Outputs (x, xe, ok, snr, masked for both configs and dtypes: {len(same)} arrays) "
              f"identical in dtype and bytes before vs after: {verdict}."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
