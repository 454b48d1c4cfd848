"""Benchmark: batched continuum normalisation vs a per-spectrum loop doing the same fits.

Builds N synthetic apStar-grid spectra (seeded): a smooth continuum per detector × absorption
lines whose depths vary from star to star, plus Gaussian noise, a few NaN and bitmask-flagged
pixels. Both implementations normalise them with the same continuum pixels (line-free pixels of
the synthetic line list, ~7% of each detector, or the DR17 mask with ``--mask``):

* ``starlabels.preprocess.continuum_normalise`` — one weighted least-squares solve per detector
  for the whole batch;
* a Python loop over spectra and detectors calling ``numpy.polynomial.chebyshev.chebfit``
  (weights 1/σ) and ``chebval``, dividing flux and error, filling rejected pixels.

The loop is timed ``--repeat`` times, the batched code 3 × ``--repeat`` times (best wall-clock and
best CPU time kept; the headline ratio is wall-clock). For context it also times the fits alone
(batched solve vs chebfit loop on the same gathered continuum pixels).

Issue 17's numbers come first: the **allocate-and-copy floor** (fresh (N, 7514) outputs, flux and
error copied to the ASPCAP grid, bitmask tested — what any implementation must do; also the
copy-only floor into a reused output pair, for reference) against ``continuum_normalise`` warm (a
reused ``out=`` pair, as a streaming caller) and cold (fresh outputs), interleaved rounds in this
process. Then astroNN 1.1.0's ``apogee_continuum``, ours and the floor, each in its own fresh
process (astroNN in ``bench/.astronn-venv``; 1 BLAS/OpenMP thread each; the same float64 spectra,
int64 bitmask and DR17-style mask from one file; ``bench/continuum_timing.py``, the floor by this
script's hidden ``--fresh-floor``), ``--processes`` rounds of the three in turn, min and median:
the first call in a fresh process pays the kernel's first touch of fresh output memory, which on a
shared VM varies by 10x or more from run to run. The output states the threads, dtype, N and the
allocator (glibc defaults: nothing is tuned). Between the two, the division step alone is timed two ways
(:func:`division_variants`: ``np.divide`` twice, as the library does, against the reciprocal then two
multiplies). Prints e.g.::

    batched vs loop: 35.2x faster, max |diff| = 3.1e-09 (N=2000)

Usage: ``.venv/bin/python bench/continuum.py [--n 2000] [--seed 0] [--dtype float64]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev

from starlabels.preprocess.bitmask import PIXMASK_BITS, bits_to_value
from starlabels.preprocess.chebyshev_fit import ChebyshevDesign
from starlabels.preprocess.continuum import continuum_normalise
from starlabels.preprocess.grids import APSTAR, ASPCAP, apstar_wavelength, index_in, pixel_ranges
from starlabels.preprocess.masking import BAD_PIXEL_ERROR


def make_spectra(
    n: int, seed: int, dtype: str = "float64"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N synthetic apStar spectra: ``flux``, ``error`` (N, 8575), ``bitmask`` (N, 8575) int32 and a
    (7514,) bool continuum mask of line-free pixels."""
    rng = np.random.default_rng(seed)
    wl = apstar_wavelength()
    # two line templates (optical depth at unit strength): "metal" lines and "molecular" lines
    n_lines = 900
    centre = rng.uniform(wl[0], wl[-1], n_lines)
    width = rng.uniform(0.3, 0.8, n_lines)  # Å
    strength = rng.uniform(0.05, 1.0, n_lines)
    kind = rng.integers(0, 2, n_lines)
    tau = np.zeros((2, APSTAR.n_pixels))
    for t in range(2):
        sel = kind == t
        # sum of Gaussian profiles, built in blocks to keep memory small
        for a in range(0, sel.sum(), 100):
            c, w, s = centre[sel][a : a + 100], width[sel][a : a + 100], strength[sel][a : a + 100]
            tau[t] += (s[:, None] * np.exp(-0.5 * ((wl[None, :] - c[:, None]) / w[:, None]) ** 2)).sum(0)
    labels = rng.uniform(0.2, 1.5, (n, 2))
    absorption = np.exp(-(labels @ tau))  # (N, 8575)
    # smooth continuum: overall scale × a random quadratic per detector
    continuum = np.empty((n, APSTAR.n_pixels))
    for a, b in pixel_ranges(APSTAR):
        lo, hi = (0 if a == 246 else a), (APSTAR.n_pixels if b == 8335 else b)
        x = np.linspace(-1, 1, b - a)
        full_x = np.interp(np.arange(lo, hi), np.arange(a, b), x, left=-1.0, right=1.0)
        coef = np.column_stack(
            [np.ones(n), rng.normal(0, 0.15, n), rng.normal(0, 0.05, n)]
        )
        continuum[:, lo:hi] = coef @ chebyshev.chebvander(full_x, 2).T
    continuum[:, 3274:3585] = 1.0
    continuum[:, 6080:6344] = 1.0
    continuum *= rng.lognormal(np.log(500), 0.8, (n, 1))
    snr = rng.uniform(30, 300, (n, 1))
    error = continuum / snr * rng.uniform(0.8, 1.2, (n, APSTAR.n_pixels))
    flux = continuum * absorption + error * rng.standard_normal((n, APSTAR.n_pixels))
    bitmask = np.zeros((n, APSTAR.n_pixels), dtype=np.int32)
    flagged = rng.random((n, APSTAR.n_pixels)) < 0.01
    bitmask[flagged] = 1 << PIXMASK_BITS["SIG_SKYLINE"]
    bitmask[rng.random((n, APSTAR.n_pixels)) < 0.01] |= 1 << PIXMASK_BITS["PERSIST_LOW"]  # kept
    flux[rng.random((n, APSTAR.n_pixels)) < 0.002] = np.nan
    flux[:, :246] = np.nan  # like real apStar edges and gaps
    flux[:, 8335:] = np.nan
    # continuum pixels: line-free in both templates, thinned to ~7% of each detector
    line_free = index_in(ASPCAP, "apstar")[(tau[:, index_in(ASPCAP, "apstar")].max(0) < 1e-3)]
    mask = np.zeros(ASPCAP.n_pixels, dtype=bool)
    pos = np.flatnonzero(np.isin(index_in(ASPCAP, "apstar"), line_free))
    for sl in ASPCAP.segment_slices:
        cand = pos[(pos >= sl.start) & (pos < sl.stop)]
        take = min(cand.size, round(0.07 * (sl.stop - sl.start)))
        mask[rng.choice(cand, take, replace=False)] = True
    return flux.astype(dtype), error.astype(dtype), bitmask, mask


def normalize_loop(
    flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray, mask: np.ndarray, degree: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the same normalisation, one spectrum and one detector at a time (chebfit)."""
    reject = bits_to_value(
        ["BADPIX", "CRPIX", "SATPIX", "UNFIXABLE", "BADDARK", "BADFLAT", "BADERR", "NOSKY",
         "SIG_SKYLINE"]
    )
    idx = index_in(ASPCAP, "apstar")
    xs = [np.linspace(-1, 1, sl.stop - sl.start) for sl in ASPCAP.segment_slices]
    out_f = np.empty((flux.shape[0], ASPCAP.n_pixels), dtype=np.result_type(flux, np.float32))
    out_e = np.empty_like(out_f)
    for i in range(flux.shape[0]):
        f = flux[i, idx].astype(np.float64)
        e = error[i, idx].astype(np.float64)
        with np.errstate(invalid="ignore"):
            good = np.isfinite(f) & (e > 0) & (e < BAD_PIXEL_ERROR) & ((bitmask[i, idx] & reject) == 0)
        for sl, x in zip(ASPCAP.segment_slices, xs, strict=True):
            use = good[sl] & mask[sl]
            coef = chebyshev.chebfit(x[use], f[sl][use], degree, w=1.0 / e[sl][use])
            cont = chebyshev.chebval(x, coef)
            out_f[i, sl] = f[sl] / cont
            out_e[i, sl] = e[sl] / cont
        out_f[i, ~good] = 1.0
        out_e[i, ~good] = BAD_PIXEL_ERROR
    return out_f, out_e


def fits_batched(fc: np.ndarray, ec: np.ndarray, gc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Only the fits, batched: (N, n_cont) gathered continuum pixels → (N, 3, 3) coefficients, with
    the library's batched solver (:class:`~starlabels.preprocess.chebyshev_fit.ChebyshevDesign`)."""
    design = ChebyshevDesign(mask, 2, ASPCAP.segment_slices)
    with np.errstate(divide="ignore"):
        w = np.where(gc, 1.0 / ec**2, 0.0)
    return design.fit(np.where(gc, fc, 0.0), w)[0]


def fits_loop(fc: np.ndarray, ec: np.ndarray, gc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Only the fits, one spectrum and detector at a time with chebfit."""
    xs = [np.linspace(-1, 1, sl.stop - sl.start)[mask[sl]] for sl in ASPCAP.segment_slices]
    bounds = np.cumsum([0] + [int(mask[sl].sum()) for sl in ASPCAP.segment_slices])
    out = np.empty((fc.shape[0], 3, 3))
    for i in range(fc.shape[0]):
        for d, x in enumerate(xs):
            seg = slice(bounds[d], bounds[d + 1])
            use = gc[i, seg]
            out[i, d] = chebyshev.chebfit(x[use], fc[i, seg][use], 2, w=1.0 / ec[i, seg][use])
    return out


def memory_floor(flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray, out=None) -> None:
    """What any implementation must do: read flux, error and bitmask, write (N, 7514) outputs (fresh
    ones: the allocate-and-copy floor; ``out``: a reused pair, the copy-only floor)."""
    if out is None:
        out_f = np.empty((flux.shape[0], ASPCAP.n_pixels), np.result_type(flux, np.float32))
        out_e = np.empty_like(out_f)
    else:
        out_f, out_e = out
    for sl, (a, b) in zip(ASPCAP.segment_slices, pixel_ranges(APSTAR), strict=True):
        out_f[:, sl] = flux[:, a:b]
        out_e[:, sl] = error[:, a:b]
        _ = (bitmask[:, a:b] & 4351) == 0


def lean_floor(flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray, rows: int = 28) -> None:
    """The allocate-and-copy floor without the bitmask test's whole-array temporaries: fresh
    outputs, flux and error copied per segment, the bitmask tested in blocks of ``rows`` rows into
    one reused bool buffer (cast as it is computed)."""
    out_f = np.empty((flux.shape[0], ASPCAP.n_pixels), np.result_type(flux, np.float32))
    out_e = np.empty_like(out_f)
    for sl, (a, b) in zip(ASPCAP.segment_slices, pixel_ranges(APSTAR), strict=True):
        out_f[:, sl] = flux[:, a:b]
        out_e[:, sl] = error[:, a:b]
    ranges = pixel_ranges(APSTAR)
    s0, s1 = ranges[0][0], ranges[-1][1]
    flagged = np.empty((rows, s1 - s0), bool)
    for start in range(0, flux.shape[0], rows):
        block = bitmask[start : start + rows, s0:s1]
        np.bitwise_and(block, 4351, out=flagged[: block.shape[0]], casting="unsafe")


def fresh_fill(shape: tuple[int, int], dtype, out=None) -> None:
    """Fill an output pair with zeros: a fresh pair (``out`` None: the kernel's first touch of the
    pages, zeroed at fault time, plus the fill) or a reused one (the fill alone)."""
    pair = out if out is not None else (np.empty(shape, dtype), np.empty(shape, dtype))
    for a in pair:
        a.fill(0.0)


def minor_faults() -> int:
    """This process's minor page faults so far (``getrusage``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def best_time(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) time over ``repeat`` calls, and the last result."""
    wall, cpu, result = np.inf, np.inf, None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, result


def floor_ratios(flux, error, bitmask, mask, rounds: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of the allocate-and-copy floor (also lean: :func:`lean_floor`), of
    the copy-only floor (a reused output pair), of ``continuum_normalise`` writing into a reused
    output pair (``out=``, warm) and into fresh outputs (cold), and of filling a fresh and a reused
    output pair (:func:`fresh_fill`: their difference is the first-touch cost of fresh outputs),
    interleaved rounds; ``"faults"``: the median minor page faults per call of each."""
    n = flux.shape[0]
    dtype = np.result_type(flux, np.float32)
    out = (np.empty((n, ASPCAP.n_pixels), dtype), np.empty((n, ASPCAP.n_pixels), dtype))
    out_copy = (np.empty((n, ASPCAP.n_pixels), dtype), np.empty((n, ASPCAP.n_pixels), dtype))
    fns = {
        "floor": lambda: memory_floor(flux, error, bitmask),
        "lean": lambda: lean_floor(flux, error, bitmask),
        "copy": lambda: memory_floor(flux, error, bitmask, out_copy),
        "warm": lambda: continuum_normalise(flux, error, bitmask, continuum_mask=mask, out=out),
        "cold": lambda: continuum_normalise(flux, error, bitmask, continuum_mask=mask),
        "fresh_fill": lambda: fresh_fill(out[0].shape, dtype),
        "reused_fill": lambda: fresh_fill(out[0].shape, dtype, out_copy),
    }
    fns["warm"]()
    fns["copy"]()
    best = {k: (np.inf, np.inf) for k in fns}
    faults: dict[str, list[int]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            f0 = minor_faults()
            w, c, _ = best_time(fn, 1)
            faults[k].append(minor_faults() - f0)
            best[k] = (min(best[k][0], w), min(best[k][1], c))
    best["faults"] = {k: int(np.median(v)) for k, v in faults.items()}
    return best


def division_variants(flux, error, bitmask, mask, rounds: int) -> dict[str, float]:
    """The driver's division step two ways, on the same chunks and continuum: best CPU seconds over
    ``rounds`` (timed around the division calls only), and the largest difference in units in the last
    place. Per chunk of the driver's rows (``ChebyshevDesign.chunk_rows``) the input's span is read
    first (as the driver's usability pass does, so the chunk is in cache as there), then per segment
    the fitted continuum is copied into the flux output (standing in for the driver's matrix
    product, the same for both) and

    * ``divide``: error and flux divided by it (``np.divide`` twice, as the driver does);
    * ``reciprocal``: its reciprocal taken in place (``np.divide(1, c)``: NumPy's ``np.reciprocal``
      is slower still) and error and flux multiplied by it (half the divisions)."""
    from starlabels.preprocess.continuum import fit_continuum

    cont_all = np.nan_to_num(fit_continuum(flux, error, bitmask, continuum_mask=mask).continuum, nan=1.0)
    n = flux.shape[0]
    rows = ChebyshevDesign(mask, 2, ASPCAP.segment_slices).chunk_rows
    ranges = pixel_ranges(APSTAR)
    s0, s1 = ranges[0][0], ranges[-1][1]
    seen = np.empty((rows, s1 - s0), bool)
    shape = (n, ASPCAP.n_pixels)
    outs = {k: (np.empty(shape), np.empty(shape)) for k in ("divide", "reciprocal")}

    def run(kind: str) -> float:
        of_all, oe_all = outs[kind]
        spent = 0.0
        for a in range(0, n, rows):
            r = slice(a, min(a + rows, n))
            np.isfinite(flux[r, s0:s1], out=seen[: r.stop - a])  # the chunk into cache
            np.isfinite(error[r, s0:s1], out=seen[: r.stop - a])
            for sl, (a0, a1) in zip(ASPCAP.segment_slices, ranges, strict=True):
                of, oe, fin, ein = of_all[r, sl], oe_all[r, sl], flux[r, a0:a1], error[r, a0:a1]
                of[...] = cont_all[r, sl]
                c0 = time.process_time()
                with np.errstate(all="ignore"):
                    if kind == "divide":
                        np.divide(ein, of, out=oe)
                        np.divide(fin, of, out=of)
                    else:
                        np.divide(1.0, of, out=of)
                        np.multiply(ein, of, out=oe)
                        np.multiply(fin, of, out=of)
                spent += time.process_time() - c0
        return spent

    best = {k: np.inf for k in outs}
    for _ in range(rounds):
        for k in outs:
            best[k] = min(best[k], run(k))
    ulp = 0
    for a, b in zip(outs["divide"], outs["reciprocal"], strict=True):
        finite = np.isfinite(a) & np.isfinite(b)
        ulp = max(ulp, int(np.abs(a[finite].view(np.int64) - b[finite].view(np.int64)).max()))
    return {**best, "max_ulp": ulp, "rows": rows}


def fresh_floor(data: str, repeat: int) -> None:
    """Child process: the allocate-and-copy floor timed as ``bench/continuum_timing.py`` times the
    normalisers (cold: the first call in this fresh process; warm: best of ``repeat`` more), one
    JSON line."""
    import json

    with np.load(data) as d:
        flux, error, bitmask = d["flux"], d["error"], d["bitmask"]
    t0, c0 = time.perf_counter(), time.process_time()
    memory_floor(flux, error, bitmask)
    cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    warm_s, warm_cpu, _ = best_time(lambda: memory_floor(flux, error, bitmask), repeat)
    print(json.dumps({"impl": "floor", "n": int(flux.shape[0]), "cold_s": cold_s, "warm_s": warm_s,
                      "cold_cpu_s": cold_cpu, "warm_cpu_s": warm_cpu}))


def versus_astronn(flux, error, bitmask, mask, repeat: int, processes: int) -> dict[str, list[dict]] | None:
    """astroNN, ours and the floor, each in its own fresh process (starlabels' venv, astroNN's
    ``bench/.astronn-venv``), 1 BLAS/OpenMP thread each, the same float64 input file: cold (first
    call) and warm (best of ``repeat``) seconds from ``bench/continuum_timing.py`` (the floor from
    :func:`fresh_floor`), ``processes`` rounds of the three in turn. None when astroNN's venv is
    absent."""
    import json
    import subprocess
    import sys
    import tempfile

    venv_python = HERE / ".astronn-venv" / "bin" / "python"
    if not venv_python.exists():
        return None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    results: dict[str, list[dict]] = {"astronn": [], "starlabels": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "spectra.npz"
        np.savez(data, flux=flux.astype(np.float64), error=error.astype(np.float64),
                 bitmask=bitmask.astype(np.int64), mask=mask)
        commands = {
            "astronn": [str(venv_python), str(HERE / "continuum_timing.py"), "--impl", "astronn"],
            "starlabels": [sys.executable, str(HERE / "continuum_timing.py"), "--impl", "starlabels"],
            "floor": [sys.executable, str(Path(__file__).resolve()), "--fresh-floor"],
        }
        for _ in range(processes):
            for impl, cmd in commands.items():
                run = subprocess.run([*cmd, str(data), "--repeat", str(repeat)], capture_output=True,
                                     text=True, env=env, check=True, timeout=1800)
                results[impl].append(json.loads(run.stdout.strip().splitlines()[-1]))
    return results


def print_versus_astronn(vs: dict[str, list[dict]]) -> None:
    """Min and median over the fresh processes, and the ratios astroNN / ours and ours / floor."""
    ms = 1e3
    n_proc = len(vs["starlabels"])
    print(f"fresh processes ({n_proc} rounds of astroNN, ours, floor in turn), 1 BLAS/OpenMP thread each, "
          "the same float64 input (bitmask int64); cold = the first call in the process, warm = best of "
          "the next calls (ours: out= reused; astroNN and the floor: fresh outputs); min / median over "
          "the processes; targets: astroNN / ours >= 12x, ours / floor <= 2x:")
    for kind in ("cold", "warm"):
        for clock, key in (("wall", f"{kind}_s"), ("CPU", f"{kind}_cpu_s")):
            stats = {impl: (min(r[key] for r in runs), float(np.median([r[key] for r in runs])))
                     for impl, runs in vs.items()}
            a, o, f = stats["astronn"], stats["starlabels"], stats["floor"]
            print(f"  {kind} {clock:4}: astroNN {a[0] * ms:.0f} / {a[1] * ms:.0f} ms; "
                  f"ours {o[0] * ms:.0f} / {o[1] * ms:.0f} ms; floor {f[0] * ms:.0f} / {f[1] * ms:.0f} ms "
                  f"-> astroNN/ours {a[0] / o[0]:.1f}x / {a[1] / o[1]:.1f}x; "
                  f"ours/floor {o[0] / f[0]:.2f}x / {o[1] / f[1]:.2f}x")


HERE = Path(__file__).resolve().parent


def _thp_mode() -> str:
    """The kernel's transparent-hugepage mode (``[madvise]`` etc.; NumPy advises hugepages for large
    arrays), or "unknown"."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().split()
    except OSError:
        return "unknown"
    return next((w.strip("[]") for w in text if w.startswith("[")), "unknown")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of spectra (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timings of the loops (3x as many of the fast batched runs); best kept")
    ap.add_argument("--mask", type=Path, default=None,
                    help="continuum mask .npy on the 7514 grid instead of the synthetic line-free one")
    ap.add_argument("--skip-loop", action="store_true", help="skip the per-spectrum chebfit loop")
    ap.add_argument("--skip-astronn", action="store_true", help="skip astroNN's apogee_continuum")
    ap.add_argument("--processes", type=int, default=3,
                    help="fresh-process rounds of the astroNN / ours / floor comparison (default 3)")
    ap.add_argument("--fresh-floor", metavar="NPZ", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fresh_floor is not None:  # child process of the fresh-process comparison
        fresh_floor(args.fresh_floor, args.repeat)
        return

    flux, error, bitmask, mask = make_spectra(args.n, args.seed, args.dtype)
    if args.mask is not None:
        mask = np.load(args.mask)
    print(f"{args.n} synthetic apStar spectra ({args.dtype}, bitmask {bitmask.dtype}), {mask.sum()} "
          f"continuum pixels, degree 2; numpy {np.__version__}; threads: OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} (the continuum's matrix products stay under "
          f"OpenBLAS's single-thread size; NumPy's elementwise loops use one thread); allocator: glibc "
          f"malloc defaults (nothing tuned), transparent hugepages {_thp_mode()}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"in this process, best of {3 * args.repeat} interleaved rounds:")
    ms = 1e3
    best = floor_ratios(flux, error, bitmask, mask, 3 * args.repeat)
    fw, fc = best["floor"]
    cw, cc = best["copy"]
    print(f"allocate-and-copy floor (fresh (N, 7514) outputs, copy flux+error, test bitmask): "
          f"{fw * ms:.1f} ms wall {fc * ms:.1f} ms CPU")
    lw, lc = best["lean"]
    print(f"  lean (the bitmask tested in 28-row blocks, no whole-array temporaries): {lw * ms:.1f} ms wall "
          f"{lc * ms:.1f} ms CPU")
    print(f"copy-only floor (the same into a reused output pair): {cw * ms:.1f} ms wall {cc * ms:.1f} ms CPU")
    for k, label in (("warm", "warm (out= reused)"), ("cold", "cold (fresh outputs)")):
        w, c = best[k]
        print(f"continuum_normalise {label}: {w * ms:.1f} ms wall {c * ms:.1f} ms CPU -> "
              f"{w / fw:.2f}x the floor (wall), {c / fc:.2f}x (CPU); target <= 2x; lean floor (wall/CPU) "
              f"{w / lw:.2f}x / {c / lc:.2f}x"
              + (f"; copy-only floor {w / cw:.2f}x / {c / cc:.2f}x" if k == "warm" else ""))
    nf = best["faults"]
    touch = best["fresh_fill"][1] - best["reused_fill"][1]
    cold_extra = best["cold"][1] - best["warm"][1]
    print(f"first touch of a fresh output pair (CPU; filling a fresh pair minus filling a reused one): "
          f"{touch * ms:.1f} ms; cold minus warm: ours {cold_extra * ms:.1f} ms, floor "
          f"(allocate-and-copy minus copy-only) {(fc - cc) * ms:.1f} ms; minor page faults per call "
          f"(median): floor {nf['floor']}, copy-only {nf['copy']}, ours cold {nf['cold']}, ours warm "
          f"{nf['warm']}, fresh fill {nf['fresh_fill']}")
    print(f"cold <= 2x the floor needs ours warm + first touch <= 2 x floor, i.e. warm <= "
          f"{(2 * fc - touch) * ms:.1f} ms CPU here (measured {best['warm'][1] * ms:.1f} ms); the work alone "
          f"(no first touch on either side: warm / copy-only floor) is {best['warm'][1] / cc:.2f}x")
    dv = division_variants(flux, error, bitmask, mask, args.repeat)
    print(f"division step alone ({dv['rows']}-row chunks in cache, CPU, best of {args.repeat}): np.divide "
          f"twice {dv['divide'] * ms:.1f} ms; reciprocal then two multiplies "
          f"{dv['reciprocal'] * ms:.1f} ms -> {dv['reciprocal'] / dv['divide']:.2f}x; "
          f"largest difference {dv['max_ulp']} ulp")
    if not args.skip_astronn:
        vs = versus_astronn(flux, error, bitmask, mask, args.repeat, args.processes)
        if vs is None:
            print("astroNN: bench/.astronn-venv absent (bench/astronn_agreement.py creates it); skipped")
        else:
            print_versus_astronn(vs)
    if args.skip_loop:
        return
    t_batch, c_batch, (bf, be) = best_time(
        lambda: continuum_normalise(flux, error, bitmask, continuum_mask=mask), 3 * args.repeat
    )
    t_loop, c_loop, (lf, le) = best_time(
        lambda: normalize_loop(flux, error, bitmask, mask), args.repeat
    )
    diff = float(np.abs(bf.astype(np.float64) - lf.astype(np.float64)).max())
    rel_e = float(np.abs(be.astype(np.float64) / le.astype(np.float64) - 1).max())

    # the fits alone, on the continuum pixels gathered once
    cols = index_in(ASPCAP, "apstar")[mask]
    fc, ec = flux[:, cols].astype(np.float64), error[:, cols].astype(np.float64)
    with np.errstate(invalid="ignore"):
        gc = np.isfinite(fc) & (ec > 0) & (ec < BAD_PIXEL_ERROR) & ((bitmask[:, cols] & 4351) == 0)
    t_fb, c_fb, coef_b = best_time(lambda: fits_batched(fc, ec, gc, mask), 3 * args.repeat)
    t_fl, c_fl, coef_l = best_time(lambda: fits_loop(fc, ec, gc, mask), args.repeat)
    coef_diff = float(np.abs(coef_b / coef_l - 1).max())

    print(f"normalisation  batched: {t_batch * ms:7.1f} ms wall {c_batch * ms:7.1f} ms CPU "
          f"({t_batch / args.n * 1e6:.1f} us/spectrum)")
    print(f"normalisation  loop:    {t_loop * ms:7.1f} ms wall {c_loop * ms:7.1f} ms CPU "
          f"({t_loop / args.n * 1e6:.1f} us/spectrum)")
    print(f"fits only      batched: {t_fb * ms:7.1f} ms wall; loop: {t_fl * ms:.1f} ms wall -> "
          f"{t_fl / t_fb:.1f}x (CPU {c_fl / c_fb:.1f}x), max relative coefficient diff {coef_diff:.1e}")
    print(f"normalised errors: max relative diff {rel_e:.1e}; NaN in batched output: "
          f"{int(np.isnan(bf).sum() + np.isnan(be).sum())}; CPU-time ratio {c_loop / c_batch:.1f}x")
    print(f"batched vs loop: {t_loop / t_batch:.1f}x faster, max |diff| = {diff:.1e} (N={args.n})")


if __name__ == "__main__":
    main()
