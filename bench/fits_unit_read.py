"""What a catalog run's reader spends on one unit of apStar FITS files, before and after a change
(issue 17, must-have 3: the reading process shares the machine with the network, so its CPU per unit
slows the network down).

    python bench/fits_unit_read.py [--files 1024] [--real-copies 256] [--rounds 5] [--passes 3]
                                   [--before affb420] [--out MD]

Times ``starlabels.inference.catalog_reading.read_prepared_unit`` (``read_spectra_unit``: every file
of the unit through ``starlabels.io.read_spectra`` onto the model's grid; then ``prepare_blocks``:
the blocks concatenated to float32 and preprocessed), i.e. all the reading process does per unit
before it hands the unit over, for the APOGEE Net model of ``bench/end_to_end.py`` (raw-flux
preprocessing), units of 256 files, on

* ``--files`` synthetic apStar files as ``bench/end_to_end.py`` writes them (``write_apstar`` of
  ``bench/continuum.py``'s ``make_spectra`` spectra cast to float32), and
* ``--real-copies`` copies of the real DR17 file ``apStar-dr17-2M19485057+5005279.fits`` (float64
  images, NaN flux and error outside the detectors: the BADPIX path) where ../shared/data is present.

Rows, each in its own fresh process (``--worker``), rounds interleaved:

* ``before (REV)``: the whole ``src`` of commit ``REV`` (``git archive``, first on PYTHONPATH);
* ``REV + today's io``: the same with ``src/starlabels/io`` replaced by today's (the io change alone,
  whatever else changed in the tree since);
* ``now``: today's ``src``;
* ``--extra-src NAME=DIR`` (repeatable): the ``src`` folder DIR as a row NAME, e.g. a patched copy of
  today's ``src`` to weigh a change before it is made.

Each worker reads every unit once (page cache warm, imports done), then ``--passes`` passes over all
units; per pass the mean wall ms and CPU ms (``time.process_time``: the process's user + system time,
page faults included) per unit and the minor page faults per unit; the best pass is kept. Then it runs
``run_catalog`` on the folder (``prefetch="process"``) once, and ``--catalog-runs`` times more, and
reports the reading process's CPU and minor page faults per unit (``RUSAGE_CHILDREN``: each run joins
its reading process): what the network's process shares the machine with. The two differ: the reading
process also copies each unit into the shared slots, and it is a fresh fork per run; and how often
glibc hands memory back to the system and faults it in again for the next unit (~1.2–1.5 µs per page
fault here) depends on the process's allocation history, so a unit's CPU differs between processes
running the same code (the page-fault columns show it). One thread
(torch and OpenMP/BLAS), glibc's default allocator, float32 prepared output. The ratio before / row is
taken per round (the rows of one round ran one after the other) and its median printed with the
lowest and highest.

Every worker also prints a SHA-256 of everything the units hand over (each block's prepared chunks:
network input, errors, validity, S/N, masked fraction; the resampled flags; the per-row meta) and of
the ``read_spectra`` output of every file (arrays with their dtypes, meta); the table says whether
they are the same in every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fits_read import export_before, write_real, write_synthetic  # the same inputs as bench/fits_read.py
from worker_process import run_worker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: the commit before this bench's change to the readers
BEFORE = "affb420"
PER_UNIT = 256


def _update(h: Any, obj: Any) -> None:
    """Feed ``obj`` (arrays with dtype and shape, tensors, dataclasses, containers, scalars) to ``h``."""
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):
        obj = obj.detach().numpy()
    if isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if f.name != "preprocessing":
                h.update(f.name.encode())
                _update(h, getattr(obj, f.name))
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(repr(k).encode())
            _update(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(f"[{len(obj)}".encode())
        for x in obj:
            _update(h, x)
    elif isinstance(obj, float) and obj != obj:
        h.update(b"nan")
    else:
        h.update(repr(obj).encode())


def worker(folder: Path, passes: int, catalog_runs: int) -> None:
    """Print the best pass's wall / CPU ms and page faults per unit and the digests; with
    ``catalog_runs``, instead (in a process that does nothing else first, as ``starlabels predict``) the
    reading process's CPU ms and page faults per unit over that many catalog runs, and the catalog's
    digest."""
    import torch

    sys.path.insert(0, str(HERE))
    import end_to_end
    from starlabels.inference import catalog_inputs
    from starlabels.inference.catalog_reading import read_prepared_unit
    from starlabels.inference.predict import resolve
    from starlabels.io import read_spectra

    torch.set_num_threads(1)
    files = sorted(folder.glob("*.fits"))
    _flux, _error, _bitmask, mask = _spectra(1)
    model, settings = end_to_end.build_models(mask)["APOGEE Net, point estimates"]
    im = resolve(model)
    items, _ = catalog_inputs.expand_inputs([str(folder)])
    units, _ = catalog_inputs.plan_units(items, files_per_unit=PER_UNIT, rows_per_unit=PER_UNIT)
    if catalog_runs:
        reader_cpu, reader_faults, table = catalog_reader(im, folder, catalog_runs)
        n = len(units)
        print(json.dumps({"reader_cpu_ms": reader_cpu / n, "reader_faults": reader_faults / n,
                          "catalog": table}))
        return

    handed = hashlib.sha256()
    for unit in units:  # warm: page cache, imports, caches
        blocks, skipped = read_prepared_unit(unit, im, settings)
        _update(handed, [[(key, b.kind, b.meta, b.prepared) for key, b in sorted(blocks.items())], skipped])
    read = hashlib.sha256()
    for f in files:
        spectra = read_spectra(f)
        _update(read, [(s.instrument, s.wavelength, s.flux, s.error, s.bitmask, s.meta) for s in spectra])

    best: tuple[float, float, float] | None = None
    for _ in range(passes):
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for unit in units:
            got = read_prepared_unit(unit, im, settings)
            del got
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        row = (wall * 1e3 / len(units), cpu * 1e3 / len(units), faults / len(units))
        if best is None or row[1] < best[1]:
            best = row
    assert best is not None
    print(json.dumps({"wall_ms": best[0], "cpu_ms": best[1], "faults": best[2], "units": len(units),
                      "handed": handed.hexdigest(), "read": read.hexdigest()}))


def catalog_reader(im: Any, folder: Path, runs: int) -> tuple[float, float, str]:
    """CPU ms and page faults of ``run_catalog``'s reading process per run (mean over ``runs`` runs
    after one warm run; the process is joined at the end of each run, so ``RUSAGE_CHILDREN`` has it),
    and a SHA-256 of the catalog's values (all but MODEL_VERSION, which holds the model's build time)."""
    import pandas as pd

    from starlabels.inference import catalog

    with tempfile.TemporaryDirectory(prefix="fits_unit_read_catalog_") as tmp:
        out = Path(tmp) / "catalog.parquet"

        def run() -> None:
            catalog.run_catalog(im, [folder], out, batch_size=128, seed=0, files_per_unit=PER_UNIT,
                                rows_per_unit=PER_UNIT, prefetch="process", overwrite=True)

        run()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(runs):
            run()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        table = pd.read_parquet(out).drop(columns=["MODEL_VERSION"])
        digest = hashlib.sha256(pd.util.hash_pandas_object(table).values.tobytes())
        digest.update(repr(list(table.columns)).encode())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu * 1e3 / runs, (after.ru_minflt - before.ru_minflt) / runs, digest.hexdigest()


def _spectra(n: int) -> tuple[np.ndarray, ...]:
    sys.path.insert(0, str(HERE))
    from continuum import make_spectra

    return make_spectra(n, 0)


def export_src(rev: str, dest: Path, io_from: Path | None = None) -> Path:
    """``src`` of commit ``rev`` under ``dest`` (:func:`fits_read.export_before`), with ``starlabels/io``
    copied from ``io_from``."""
    src = export_before(rev, dest)
    if src is None:
        raise RuntimeError(f"git archive of {rev!r} failed: not a commit of this repository, or no git")
    if io_from is not None:
        shutil.rmtree(src / "starlabels" / "io")
        shutil.copytree(io_from / "starlabels" / "io", src / "starlabels" / "io",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1024, help="synthetic apStar files (units of 256)")
    ap.add_argument("--real-copies", type=int, default=256, help="copies of the real DR17 apStar file")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--catalog-runs", type=int, default=3, help="catalog runs per worker for the reading "
                                                                 "process's table")
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--extra-src", action="append", default=[], metavar="NAME=DIR",
                    help="also time the src folder DIR as row NAME")
    ap.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.passes, args.catalog_runs)
        return

    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="fits_unit_read_"))
    try:
        sets = {}
        if args.files > 0:
            sets[f"{args.files} synthetic apStar files (float32)"] = tmp / "synthetic"
            write_synthetic(tmp / "synthetic", args.files)
        if write_real(tmp / "real", args.real_copies):
            name = f"{args.real_copies} copies of the real DR17 apStar file (float64, NaN edges)"
            sets[name] = tmp / "real"
        ours = REPO / "src"
        rows = {f"before ({args.before})": export_src(args.before, tmp / "before"),
                f"{args.before} + today's io": export_src(args.before, tmp / "before_io", io_from=ours),
                "now": ours}
        for extra in args.extra_src:
            name, _, folder = extra.partition("=")
            rows[name] = Path(folder).resolve()
        got: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for name, folder in sets.items():
                for row, src in rows.items():
                    args_of = ["--worker", str(folder), "--passes", str(args.passes), "--catalog-runs"]
                    units = run_worker(__file__, [*args_of, "0"], src=src, one_thread=True)
                    if args.catalog_runs:
                        units.update(run_worker(__file__, [*args_of, str(args.catalog_runs)], src=src,
                                                one_thread=True))
                    got.setdefault((name, row), []).append(units)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = render(args, sets, list(rows), got, load0, os.getloadavg()[0])
    print(report)
    if args.out:
        args.out.write_text(report)


def render(args: argparse.Namespace, sets: dict[str, Path], rows: list[str],
           got: dict[tuple[str, str], list[dict[str, Any]]], load0: float, load1: float) -> str:
    import torch

    lines = [
        "### Reading a unit of 256 apStar files for a catalog run (`read_prepared_unit`)", "",
        f"Command: `python bench/fits_unit_read.py --files {args.files} --real-copies {args.real_copies} "
        f"--rounds {args.rounds} --passes {args.passes} --catalog-runs {args.catalog_runs} "
        f"--before {args.before}"
        f"{''.join(f' --extra-src {shlex.quote(e)}' for e in args.extra_src)}`", "",
        f"APOGEE Net (raw-flux preprocessing), {PER_UNIT} files per unit; each row in its own process, "
        f"1 thread (torch, OpenMP/BLAS), glibc's default allocator, page cache warm, best of {args.passes} "
        f"passes per process (by CPU), {args.rounds} interleaved rounds. Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}; load average (1 min) {load0:.1f} before, "
        f"{load1:.1f} after, on {os.cpu_count()} CPUs (a shared machine).", "",
    ]
    base = rows[0]
    for name in sets:
        lines += [f"**{name}**", "",
                  "| code | wall ms/unit (median of rounds) | CPU ms/unit (median) | CPU ms/unit (best) | "
                  "page faults/unit | CPU before / row, per round: median [lowest, highest] |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in rows:
            rs = got[(name, row)]
            ratios = [b["cpu_ms"] / r["cpu_ms"] for b, r in zip(got[(name, base)], rs, strict=True)]
            lines.append(
                f"| {row} | {statistics.median(r['wall_ms'] for r in rs):.1f} | "
                f"{statistics.median(r['cpu_ms'] for r in rs):.1f} | {min(r['cpu_ms'] for r in rs):.1f} | "
                f"{statistics.median(r['faults'] for r in rs):.0f} | "
                f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |")
        if args.catalog_runs:
            lines += ["", "In `run_catalog`'s reading process (`prefetch=\"process\"`, batch 128; the "
                      "process's CPU user + system and minor page faults, from `RUSAGE_CHILDREN`, mean of "
                      f"{args.catalog_runs} runs after a warm one, per unit; in a worker process of its own "
                      "that does nothing else first):", "",
                      "| code | reading process CPU ms/unit (median of rounds) | page faults/unit (median) | "
                      "CPU before / row, per round: median [lowest, highest] |", "|---|---:|---:|---:|"]
            for row in rows:
                rs = got[(name, row)]
                pairs = zip(got[(name, base)], rs, strict=True)
                ratios = [b["reader_cpu_ms"] / r["reader_cpu_ms"] for b, r in pairs]
                lines.append(
                    f"| {row} | {statistics.median(r['reader_cpu_ms'] for r in rs):.1f} | "
                    f"{statistics.median(r['reader_faults'] for r in rs):.0f} | "
                    f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |")
        digests = {(r["handed"], r["read"], r.get("catalog")) for row in rows for r in got[(name, row)]}
        same = ("the same in every row and round (SHA-256 of the prepared units handed over, of every "
                "file's `read_spectra` spectra and of the catalog's values)")
        found = same if len(digests) == 1 else f"DIFFERENT: {len(digests)} distinct digests"
        lines += ["", f"Output: {found}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
