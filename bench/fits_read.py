"""Per-file cost of ``starlabels.io.read_spectra`` on apStar FITS files, and what a reading thread costs
a torch loop next to it (issue 17, must-have 3: catalogs from folders of apStar files).

    python bench/fits_read.py [--files 200] [--real-copies 100] [--mwm-files 50] [--rounds 3]
                              [--gil-rounds 10] [--paced 1000] [--before REV] [--out MD]

Rows, each measured in its own fresh process (``--worker``), rounds interleaved, best round kept:

* ``before (REV)``: ``read_spectra`` of the commit ``REV`` (default: the last one before the direct
  reader; its ``src`` is exported with ``git archive`` into a temporary folder and put first on
  PYTHONPATH);
* ``astropy only``: today's ``read_spectra`` with the direct backend switched off (``DirectSource.open``
  raising ``NeedsAstropyError``), i.e. one astropy open per file, identification and reading from it;
* ``direct`` (what ships): ``read_spectra``; the file's headers parsed by ``starlabels.io.fits_source``,
  HDU1–3 row 0 read with ``pread``;
* ``fitsio`` (only where ``import fitsio`` works, e.g. ``pip install --target DIR fitsio==1.4.2`` and
  DIR on PYTHONPATH; not a project dependency): the same reader code (``_identify`` +
  ``apstar_spectra_from_source``) on a ``FitsSource`` backed by fitsio (cfitsio).

Inputs: ``--files`` synthetic apStar files as ``bench/end_to_end.py`` writes them (``write_apstar`` of
``bench/continuum.py``'s ``make_spectra`` spectra cast to float32: 8 HDUs, HDU1–3 (2, 8575) float32 /
int32, a 16-card primary header), and ``--real-copies`` copies of the real DR17 file
``apStar-dr17-2M19485057+5005279.fits`` (11 HDUs, float64 / int64 images, 99-card primary header)
when ../shared/data is present, and ``--mwm-files`` mwmStar files (DR20 layout, an APOGEE and a
BOSS spectrum, as ``bench/readers.py`` writes them; each file its own data, so its own CHECKSUM /
DATASUM cards). The direct reader parses each distinct extension header once per process: the
synthetic and real-copy apStar files share theirs (as real apStar files of the same number of visits
do: no checksum cards), the mwm files do not. Files on local disk, page cache warm (each process
reads every file once before timing, then times ``--passes`` passes over all of them and keeps the
best). One thread per process for the timing (torch is not imported there); numpy's
float64 outputs.

Every variant's spectra are compared, file by file, with the direct reader's (flux, error, bitmask,
wavelength bit for bit; every meta value) and the result is printed.

GIL: a torch loop (Conv1d 1→8→8, kernel 3, batch 4 × 8575 px, ``torch.set_num_threads(1)``; about
0.7 ms per iteration, four kernels) runs in the main thread (a) alone, (b) while a thread reads the
synthetic files round and round with ``read_spectra`` (direct), (c) the same with the astropy-only
reader (and with the fitsio backend where it is importable), (d) while another *process* reads them
(direct), (e, f) as (b, d) with the reader limited to ``--paced`` files/s (sleeping between files),
about what a catalog run needs, and (g, h) as (b, e) with ``sys.setswitchinterval(1e-4)`` (default
5 ms: how long a thread that wants the GIL waits before it asks the holder to drop it; process-wide,
so only a CLI may set it). Printed: the loop's seconds, the ratio to (a), how many files the reader
got through meanwhile, and the loop's extra time per file read (what reading one file costs the
loop). A process costs the loop only CPU (2 cores), a thread also the GIL: the loop's thread needs
it between kernels. Rows interleaved over ``--gil-rounds`` rounds, best kept.

Each reader drops its spectra after each file (as the timing workers do), so freed memory is reused;
a caller that keeps them pays page faults on fresh memory as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from accuracy import shared_data_dir  # $STARLABELS_SHARED_DATA or ../shared/data
from worker_process import run_worker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = shared_data_dir() / "real" / "apStar-dr17-2M19485057+5005279.fits"
#: the last commit before the direct reader (io/fits_source.py)
BEFORE = "ac3d467"


# ------------------------------------------------------------------------------------------------
# backends for the variants
# ------------------------------------------------------------------------------------------------
def fitsio_source(path: Path) -> Any:
    """A ``starlabels.io.fits_source.FitsSource`` backed by fitsio (the reader code stays ours)."""
    import fitsio

    from starlabels.io.fits_source import FitsSource

    class FitsioSource(FitsSource):
        def __init__(self, p: Path):
            self.path = p
            self._fits = fitsio.FITS(str(p))
            self._headers: dict[int, Any] = {}

        def close(self) -> None:
            self._fits.close()

        def __len__(self) -> int:
            return len(self._fits)

        def header(self, index: int) -> Any:
            if index not in self._headers:
                self._headers[index] = self._fits[index].read_header()
            return self._headers[index]

        def image_info(self, index: int) -> tuple[int, tuple[int, ...]] | None:
            info = self._fits[index].get_info()
            if info["hdutype"] != 0:
                return None
            return int(info["img_type"]), tuple(int(n) for n in info["dims"])

        def image_shape(self, index: int, name: str) -> tuple[int, ...]:
            info = self.image_info(index)
            assert info is not None
            return info[1]

        def image(self, index: int, name: str, rows: Any = None, dtype: Any = None) -> np.ndarray:
            hdu = self._fits[index]
            if isinstance(rows, int):
                data = hdu[rows:rows + 1, :][0]
            elif isinstance(rows, slice):
                start, stop, _ = rows.indices(self.image_shape(index, name)[0])
                data = hdu[start:stop, :]
            else:
                data = hdu.read()
            return data if dtype is None else data.astype(dtype)

    return FitsioSource(path)


@contextlib.contextmanager
def astropy_only():
    """Switch the direct backend off (``DirectSource.open`` raises ``NeedsAstropyError``)."""
    from starlabels.io import fits_source

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise fits_source.NeedsAstropyError

    saved = fits_source.DirectSource.open
    fits_source.DirectSource.open = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        fits_source.DirectSource.open = saved  # type: ignore[method-assign]


def fitsio_available() -> bool:
    try:
        import fitsio  # noqa: F401
    except ImportError:
        return False
    return True


def reader(variant: str):
    """``path → list[Spectrum]`` for a variant (in this process's starlabels)."""
    from starlabels.io import read_spectra

    if variant in ("before", "direct"):
        return read_spectra
    if variant == "astropy only":
        def read_astropy(path: Path) -> list[Any]:
            with astropy_only():
                return read_spectra(path)

        return read_astropy
    if variant == "fitsio":
        from starlabels.io.read import _identify
        from starlabels.io.sdss_v import apstar_spectra_from_source

        def read(path: Path) -> list[Any]:
            source = fitsio_source(path)
            try:
                assert _identify(source) in ("apStar", "apStar-sdss5")
                return apstar_spectra_from_source(source)
            finally:
                source.close()

        return read
    raise ValueError(variant)


def of_set(variants: list[str], name: str) -> list[str]:
    """The variants measured on file set ``name`` (the fitsio backend here reads apStar files only)."""
    return [v for v in variants if not (v == "fitsio" and name == "mwmStar")]


def worker(variant: str, folder: Path, passes: int) -> None:
    """Print the best ms per file over ``passes`` passes (after one warm pass)."""
    files = sorted(folder.glob("*.fits"))
    read = reader(variant)
    for f in files:
        read(f)
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        for f in files:
            read(f)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"ms_per_file": best / len(files) * 1e3}))


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def write_synthetic(folder: Path, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from continuum import make_spectra
    from starlabels.io import write_apstar

    flux, error, bitmask, _mask = make_spectra(n, 0)
    flux, error = flux.astype(np.float32), error.astype(np.float32)
    folder.mkdir(parents=True)
    for i in range(n):
        write_apstar(folder / f"apStar-dr17-2M{i:08d}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M{i:08d}"})


def write_real(folder: Path, n: int) -> bool:
    if not REAL.is_file() or n <= 0:
        return False
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copyfile(REAL, folder / f"apStar-dr17-2M{i:08d}.fits")
    return True


def write_mwm(folder: Path, n: int) -> bool:
    """``n`` mwmStar files (DR20 layout, an APOGEE and a BOSS spectrum each, as bench/readers.py
    writes them), each with its own data, so each has its own CHECKSUM/DATASUM header cards."""
    from starlabels.io import Spectrum, write_mwm_star

    if n <= 0:
        return False
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    grids = (("apogee", 10.0 ** (4.179 + 6e-6 * np.arange(8575)), "apo25m"),
             ("boss", 10.0 ** (3.5523 + 1e-4 * np.arange(4648)), "lco25m"))
    for i in range(n):
        spectra = []
        for instrument, wave, telescope in grids:
            err = rng.uniform(0.5, 2.0, wave.size)
            err[:10] = np.inf
            spectra.append(Spectrum(instrument, wave, rng.normal(100, 5, wave.size), err,
                                    rng.integers(0, 1 << 12, wave.size), {"TELESCOPE": telescope}))
        write_mwm_star(folder / f"mwmStar-0.8.1-{103020000 + i}.fits", spectra, {"SDSS_ID": 103020000 + i},
                       layout="dr20")
    return True


def export_before(rev: str, dest: Path) -> Path | None:
    """``src`` of commit ``rev`` under ``dest`` (None when git cannot)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return dest / "src"


def _difference(a: list[Any], b: list[Any]) -> str:
    """The first difference between two readers' spectra of one file ("" when none)."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} spectra"
    for x, y in zip(a, b, strict=True):
        for k in ("flux", "error", "bitmask", "wavelength"):
            u, v = getattr(x, k), getattr(y, k)
            if u.dtype != v.dtype or u.tobytes() != v.tobytes():
                return f"{k} differs"
        if x.meta.keys() != y.meta.keys():
            return f"meta keys differ: {sorted(set(x.meta) ^ set(y.meta))}"
        for k in x.meta:
            if not (x.meta[k] == y.meta[k] or (x.meta[k] != x.meta[k] and y.meta[k] != y.meta[k])):
                return f"meta {k}: {x.meta[k]!r} vs {y.meta[k]!r} (direct)"
    return ""


def check_identical(folder: Path, variants: list[str]) -> str:
    """Compare every variant's spectra with the direct reader's, file by file (in this process)."""
    files = sorted(folder.glob("*.fits"))
    reference = [reader("direct")(f) for f in files]
    out = []
    for v in variants:
        if v not in ("before", "direct"):
            diffs = [d for f, r in zip(files, reference, strict=True) if (d := _difference(reader(v)(f), r))]
            found = f"DIFFERENT in {len(diffs)} of {len(files)} files, e.g. {diffs[0]}" if diffs else \
                "bit-identical arrays and equal meta in every file"
            out.append(f"{v}: {found}")
    return "; ".join(out)


# ------------------------------------------------------------------------------------------------
# GIL
# ------------------------------------------------------------------------------------------------
def _read_forever(files: list[Path], read: Any, stop: Any, count: Any, rate: float = 0.0) -> None:
    """Read ``files`` round and round until ``stop``; at most ``rate`` files per second (0: no limit,
    else sleeping between files)."""
    i = 0
    t0 = time.perf_counter()
    while not stop.is_set():
        read(files[i % len(files)])
        i += 1
        count.value = i
        if rate:
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)


class _Counter:
    value = 0


def _process_reader(folder: str, stop: Any, count: Any, rate: float) -> None:
    _read_forever(sorted(Path(folder).glob("*.fits")), reader("direct"), stop, count, rate)


def gil_rows(folder: Path, rounds: int, iterations: int, paced: float) -> dict[str, tuple[float, float]]:
    """{row: (best seconds of the torch loop, files the reader read per second meanwhile)}."""
    import torch

    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv1d(8, 8, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(4, 1, 8575)
    files = sorted(folder.glob("*.fits"))

    def loop() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(iterations):
                net(x)
            return time.perf_counter() - t0

    loop()
    # row → (reader in a thread (a function) or a process ("process"), files/s limit)
    rows: dict[str, tuple[Any, float]] = {
        "alone": (None, 0.0),
        "thread reading (direct)": (reader("direct"), 0.0),
        "thread reading (astropy only)": (reader("astropy only"), 0.0),
        "process reading (direct)": ("process", 0.0),
        **({"thread reading (fitsio backend)": (reader("fitsio"), 0.0)} if fitsio_available() else {}),
        f"thread reading (direct), ≤ {paced:.0f} files/s": (reader("direct"), paced),
        f"process reading (direct), ≤ {paced:.0f} files/s": ("process", paced),
        "thread reading (direct), switch interval 0.1 ms": (reader("direct"), 0.0),
        f"thread reading (direct), ≤ {paced:.0f} files/s, switch interval 0.1 ms": (reader("direct"), paced),
    }
    best: dict[str, tuple[float, float]] = {}
    ctx = multiprocessing.get_context("spawn")
    for _ in range(rounds):
        for row, (how, rate) in rows.items():
            extra: Any = None
            if how == "process":
                stop, count = ctx.Event(), ctx.Value("l", 0)
                extra = ctx.Process(target=_process_reader, args=(str(folder), stop, count, rate),
                                    daemon=True)
            else:
                stop, count = threading.Event(), _Counter()
                if how is not None:
                    extra = threading.Thread(target=_read_forever, args=(files, how, stop, count, rate),
                                             daemon=True)
            if extra is not None:
                extra.start()
                while count.value == 0:  # started and reading
                    time.sleep(0.01)
            interval = sys.getswitchinterval()
            if "switch interval" in row:
                sys.setswitchinterval(1e-4)  # process-wide: what a CLI could set for its own process
            c0 = count.value
            seconds = loop()
            got = (count.value - c0) / seconds
            sys.setswitchinterval(interval)
            stop.set()
            if extra is not None:
                extra.join()
            if row not in best or seconds < best[row][0]:
                best[row] = (seconds, got)
    return best


# ------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--real-copies", type=int, default=100)
    ap.add_argument("--mwm-files", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--gil-iterations", type=int, default=400)
    ap.add_argument("--gil-rounds", type=int, default=10)
    ap.add_argument("--paced", type=float, default=1000.0, help="files/s of the paced reader rows")
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.folder, args.passes)
        return

    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="fits_read_"))
    try:
        sets = {"synthetic": tmp / "synthetic"}
        write_synthetic(sets["synthetic"], args.files)
        if write_real(tmp / "real", args.real_copies):
            sets["real DR17"] = tmp / "real"
        if write_mwm(tmp / "mwm", args.mwm_files):
            sets["mwmStar"] = tmp / "mwm"
        before_src = export_before(args.before, tmp / "before")
        variants = (["before"] if before_src else []) + ["astropy only", "direct"]
        if fitsio_available():
            variants.append("fitsio")
        ours = str(REPO / "src")
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, folder in sets.items():
                for v in of_set(variants, name):
                    src = str(before_src) if v == "before" else ours
                    ms = run_worker(__file__, ["--worker", v, "--folder", str(folder), "--passes",
                                               str(args.passes)], src=src, one_thread=True)["ms_per_file"]
                    times.setdefault((name, v), []).append(ms)
        checks = {name: check_identical(folder, of_set(variants, name)) for name, folder in sets.items()}
        gil = gil_rows(sets["synthetic"], args.gil_rounds, args.gil_iterations, args.paced)
        # float32 → float64: what Spectrum's documented float64 flux/error cost per file
        f32 = np.ones(8575, np.float32)
        t0 = time.perf_counter()
        for _ in range(10000):
            np.asarray(f32, np.float64)
            np.asarray(f32, np.float64)
        to64 = (time.perf_counter() - t0) / 10000 * 1e3
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    print(markdown(args, sets, variants, times, checks, gil, to64, load0, load1), end="")
    if args.out:
        args.out.write_text(markdown(args, sets, variants, times, checks, gil, to64, load0, load1))


def markdown(args: Any, sets: dict[str, Path], variants: list[str], times: dict[tuple[str, str], list[float]],
             checks: dict[str, str], gil: dict[str, tuple[float, float]], to64: float, load0: float,
             load1: float) -> str:
    import astropy
    import torch

    label = {"before": f"before ({args.before})", "astropy only": "astropy only (one open)",
             "direct": "direct (ships)", "fitsio": "fitsio 1.4.2 backend"}
    lines = [
        "# Reading apStar FITS files: `read_spectra` per file, and the GIL",
        "",
        f"Command: `python bench/fits_read.py --files {args.files} --real-copies {args.real_copies} "
        f"--mwm-files {args.mwm_files} --rounds {args.rounds} --gil-rounds {args.gil_rounds}`",
        "",
        f"Each row in its own process, 1 thread, page cache warm, best of {args.passes} passes over all "
        f"files per process, best of {args.rounds} interleaved rounds; output float64 (Spectrum's "
        f"documented dtype). Python {platform.python_version()}, numpy {np.__version__}, astropy "
        f"{astropy.__version__}, torch {torch.__version__}; load average (1 min) {load0:.1f} before, "
        f"{load1:.1f} after, on {os.cpu_count()} CPUs (a shared machine).",
        "",
    ]
    for name in sets:
        what = {"synthetic": f"{args.files} synthetic apStar files (write_apstar, float32, 8 HDUs)",
                "real DR17": f"{args.real_copies} copies of the real DR17 apStar file (float64, 11 HDUs, "
                             "99-card header)",
                "mwmStar": f"{args.mwm_files} mwmStar files (write_mwm_star, DR20 layout, an APOGEE and a "
                           "BOSS spectrum each; no fitsio row: the fitsio backend here reads apStar "
                           "only)"}[name]
        direct = min(times[(name, "direct")])
        lines += [f"**{what}**", "", "| reader | ms/file (best) | median of rounds | / direct |",
                  "|---|---:|---:|---:|"]
        for v in of_set(variants, name):
            t = times[(name, v)]
            lines.append(f"| {label[v]} | {min(t):.3f} | {statistics.median(t):.3f} | "
                         f"{min(t) / direct:.2f} |")
        lines += ["", f"Arrays: {checks[name]}.", ""]
    alone = gil["alone"][0]
    lines += [
        f"**GIL**: torch loop (Conv1d 1→8→8, k=3, batch 4 × 8575, {args.gil_iterations} iterations, "
        f"torch threads = 1) in the main thread, best of {args.gil_rounds} interleaved rounds; the readers "
        f"read the {args.files} synthetic files:",
        "",
        "| next to the loop | loop s | / alone | files read per s meanwhile | loop ms lost per file read |",
        "|---|---:|---:|---:|---:|",
    ]
    for row, (s, rate) in gil.items():
        lost = f"{(s - alone) * 1e3 / (rate * s):.3f}" if rate else "–"
        lines.append(f"| {row} | {s:.3f} | {s / alone:.2f} | {rate:.0f} | {lost} |")
    lines += ["", f"float32 → float64 of flux and error (Spectrum's dtype): {to64 * 1e3:.1f} µs per file.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
