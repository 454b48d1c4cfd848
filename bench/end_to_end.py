"""End-to-end catalog throughput vs the bare network forward (issue 17, must-have 3).

    python bench/end_to_end.py [--quick] [--rounds 3] [--readers process,thread,inline]
                               [--unit-sizes 64,256,1024] [--tuned-allocator] [--json PATH] [--out MD]

Prints a markdown section (:func:`markdown_section`; ``bench/throughput.py`` includes it via
:func:`section`, i.e. :func:`run` + :func:`markdown_section`). For two networks, side by side in
one process, rounds interleaved, a bare forward before each end-to-end run (and one after the last);
printed are the best rate of each row and the *paired ratios* (the mean of the bare forwards just
before and just after a run over the run, median and range over the rounds):

* **APOGEE Net** (random weights, raw-flux preprocessing, 8575 px), point estimates;
* **BayesianCNN** (astroNN's BCNN, dropout 0.3, continuum normalisation onto the 7514-px ASPCAP
  grid), **MC dropout, 100 passes**;

the rates in spectra/s of

* ``bare forward``: the library's compute on preprocessed float32 tensors, nothing else —
  ``uncertainty.point`` / ``uncertainty.mc_dropout`` on ``resolve(model).physical`` (the network
  with its scalers), same batch size, called on the same spectra per call as a catalog unit holds;
* ``end-to-end``: :func:`starlabels.inference.catalog.run_catalog` from raw apStar-grid spectra to a
  Parquet catalog — planning the inputs, reading them (HDF5 rows, or a folder of apStar FITS
  files), grid checks, preprocessing, the network, flags and calibration bookkeeping, the parts
  files and the final catalog — with the next unit read and prepared (pixel rejection,
  preprocessing) while the network runs, by a **reading process** (``prefetch="process"``, the
  default on Linux) or a **reading thread** (``prefetch="thread"``);
* ``end-to-end, no prefetch``: the same with ``prefetch=False``.

Same process, same float32 input values, torch threads = 1 for every row (the end-to-end rows also
run the reading-and-preparing process or thread next to it; the machine has 2 cores), the
glibc-default allocator unless ``--tuned-allocator`` (then ``starlabels.tune_process`` for the
whole process, every row).
The target is end-to-end ≥ 0.90 × bare forward.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import machine  # bench/machine.py (this script's folder is on sys.path): the CPU's name

HERE = Path(__file__).resolve().parent
LABELS = ["TEFF", "LOGG", "FE_H"]
BATCH = 128
#: units per input (each unit: one predict call, one parts file; a survey run uses the default
#: ROWS_PER_UNIT = 1024 / FILES_PER_UNIT = 256, so per-unit costs are spread over many spectra). The
#: first unit is read and prepared before the network can start (the pipeline's fill, about 1/UNITS
#: of the reading work), so too few units would measure the fill rather than a survey run's steady state.
UNITS = 16
#: the catalog readers measured (``--readers``): a reading process, a reading thread, none (in line)
READERS = ("process", "thread", "inline")


def build_models(mask: np.ndarray) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{name: (TrainedModel, run settings)}`` for APOGEE Net (point) and the BCNN (MC dropout)."""
    import torch

    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.models import ApogeeNet, BayesianCNN
    from starlabels.models.folder import TrainedModel
    from starlabels.preprocess.pipeline import PreprocessConfig

    scaler = LabelScaler([5000.0, 3.0, -0.5], [700.0, 1.2, 0.5])
    torch.manual_seed(0)
    apogee = TrainedModel(ApogeeNet(3).eval(), LABELS, scaler, SpectrumScaler("none"), ["K", "dex", "dex"],
                          preprocessing=PreprocessConfig(kind="raw").to_dict())
    bcnn = TrainedModel(BayesianCNN(3, 7514, dropout=0.3).eval(), LABELS, scaler, SpectrumScaler("none"),
                        ["K", "dex", "dex"],
                        preprocessing=PreprocessConfig(kind="continuum",
                                                       continuum_pixels=np.flatnonzero(mask).tolist()).to_dict())
    return {
        "APOGEE Net, point estimates": (apogee, {"uncertainty": None, "n_samples": 1}),
        "BCNN, MC dropout (100 passes)": (bcnn, {"uncertainty": "mc_dropout", "n_samples": 100}),
    }


def write_inputs(folder: Path, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray) -> dict[str, Path]:
    """The same spectra as a starlabels HDF5 dataset and as a folder of apStar FITS files."""
    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.io import write_apstar

    folder.mkdir(parents=True, exist_ok=True)
    h5 = folder / "spectra.h5"
    with DatasetWriter(h5, flux.shape[1], "apstar") as w:
        w.append(flux, error, bitmask, meta={"apogee_id": [f"2M{i:08d}" for i in range(len(flux))]})
    fits_dir = folder / "apstar"
    fits_dir.mkdir(exist_ok=True)
    for i in range(len(flux)):
        write_apstar(fits_dir / f"apStar-dr17-2M{i:08d}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M{i:08d}"})
    return {"HDF5": h5, "FITS folder": fits_dir}


def preprocessed(im: Any, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray):
    """The network input of ``im`` for these raw spectra, as the bare-forward rows get it."""
    import torch

    from starlabels.preprocess.pipeline import PreprocessConfig

    cfg = im.preprocessing if isinstance(im.preprocessing, PreprocessConfig) else \
        PreprocessConfig.from_dict(im.preprocessing)
    x, _ = cfg.apply(flux, error, bitmask)
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def measure(im: Any, settings: dict[str, Any], x: Any, sources: dict[str, Path], per_unit: int, rounds: int,
            tmp: Path, readers: tuple[str, ...] = READERS) -> tuple[dict, dict]:
    """Best (seconds for the whole run, seconds from the first unit's network start to the end) per
    configuration (bare forward; end-to-end from each source with each of ``readers``),
    configurations interleaved over ``rounds``, and the paired ratios (bare forward / end-to-end, the
    bare forward being the mean of those measured just before and just after the run). The second
    figure leaves out the pipeline's fill (the first unit is read and prepared before anything else
    can run), i.e. the rate a survey run of many units has; for the bare forward both are the same."""
    from starlabels.inference import catalog, uncertainty

    def bare():  # the same spectra per call as a unit gets (the working set matters for the allocator)
        for start in range(0, x.shape[0], per_unit):
            xs = x[start:start + per_unit]
            if settings["uncertainty"] == "mc_dropout":
                uncertainty.mc_dropout(im.physical, xs, n_samples=settings["n_samples"], batch_size=BATCH,
                                       seed=0)
            else:
                uncertainty.point(im.physical, xs, batch_size=BATCH)
        return None

    def e2e(source, prefetch):
        def go():
            out = tmp / "catalog.parquet"
            real, first = catalog.predict_blocks, []

            def first_network(*args, **kwargs):  # when the first unit reaches the network
                if not first:
                    first.append(time.perf_counter())
                return real(*args, **kwargs)

            catalog.predict_blocks = first_network
            try:
                catalog.run_catalog(im, [source], out, batch_size=BATCH, seed=0, files_per_unit=per_unit,
                                    rows_per_unit=per_unit, overwrite=True, prefetch=prefetch, **settings)
            finally:
                catalog.predict_blocks = real
            out.unlink()
            return first[0]
        return go

    names = {"process": "reading process", "thread": "reading thread", "inline": "no prefetch"}
    steps = {"bare forward": bare}
    for src_name, src in sources.items():
        for reader in readers:
            prefetch = False if reader == "inline" else reader
            steps[f"end-to-end, {src_name}, {names[reader]}"] = e2e(src, prefetch)
    bare()  # warm-up
    best = {s: (float("inf"), float("inf")) for s in steps}
    runs: list[tuple[str, float, float, float]] = []  # (configuration, bare just before, whole, steady)

    def timed(fn) -> tuple[float, float]:
        t0 = time.perf_counter()
        started = fn()
        t1 = time.perf_counter()
        return t1 - t0, t1 - (started if started is not None else t0)

    for _ in range(rounds):
        for s, fn in steps.items():
            if s == "bare forward":
                continue
            b, _ = timed(bare)
            total, steady = timed(fn)
            runs.append((s, b, total, steady))
            best[s] = (min(best[s][0], total), min(best[s][1], steady))
    last, _ = timed(bare)
    # each run's bare forward: the mean of the one just before it and the one just after it (the next
    # run's, or a last one), so that a machine drifting in speed during the run affects both sides alike
    after = [b for _, b, _, _ in runs[1:]] + [last]
    paired: dict[str, list[tuple[float, float]]] = {s: [] for s in steps if s != "bare forward"}
    for (s, before, total, steady), b_after in zip(runs, after, strict=True):
        b = (before + b_after) / 2
        paired[s].append((b / total, b / steady))
    fastest = min([last] + [b for _, b, _, _ in runs])
    best["bare forward"] = (fastest, fastest)
    return best, paired


def time_breakdown(
    im: Any, settings: dict[str, Any], source: Path, per_unit: int, tmp: Path
) -> dict[str, float]:
    """Seconds inside each step of one end-to-end run without prefetch (wrappers around the library's
    functions; summed over threads where predict prepares its next chunk in one): reading, preprocessing
    (``prepare_chunk``), the network (``uncertainty.point`` / ``mc_dropout``), catalog rows
    (``catalog_frame``), parts and catalog files (``write_unit``, ``assemble``), and the rest."""
    from starlabels.inference import catalog, catalog_reading, prepared_spectra, uncertainty

    spent: dict[str, float] = {}
    patches = [(catalog_reading, "read_unit", "reading"),
               (prepared_spectra, "prepare_chunk", "preprocessing"),
               (uncertainty, "point", "network"), (uncertainty, "mc_dropout", "network"),
               (catalog, "catalog_frame", "catalog rows"), (catalog, "write_unit", "parts and catalog files"),
               (catalog, "assemble", "parts and catalog files")]
    originals = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
        return wrapper

    for (mod, name, key), (_, _, fn) in zip(patches, originals, strict=True):
        setattr(mod, name, timed(fn, key))
    try:
        t0 = time.perf_counter()
        catalog.run_catalog(im, [source], tmp / "catalog.parquet", batch_size=BATCH, seed=0,
                            files_per_unit=per_unit, rows_per_unit=per_unit, overwrite=True, prefetch=False,
                            **settings)
        total = time.perf_counter() - t0
    finally:
        for mod, name, fn in originals:
            setattr(mod, name, fn)
        (tmp / "catalog.parquet").unlink(missing_ok=True)
    spent["other (planning, predict bookkeeping, flags)"] = total - sum(spent.values())
    spent["total"] = total
    return spent


def contention(im: Any, settings: dict[str, Any], x: Any, sources: dict[str, Path], per_unit: int,
               rounds: int) -> dict[str, tuple[float, float]]:
    """The bare forward alone, next to a thread and next to a (forked) process that read and prepare
    units of each source in a loop (what the catalog's readers do), and next to a process that only
    spins (a Python loop over a range: no file, no array), best seconds of ``rounds`` each →
    ``{source: (alone, next to the reading thread, next to the reading process, next to the spinning
    process)}``. The ratios are the price the network pays for sharing the machine (and, with the
    thread, the GIL) with the reader; the spinning process separates the price of the other core
    being busy at all from that of what the reader does (memory traffic, caches)."""
    import multiprocessing
    import threading

    from starlabels.inference import catalog_reading, uncertainty
    from starlabels.inference.catalog_inputs import expand_inputs, plan_units

    xs = x[:per_unit]

    def forward() -> float:
        t0 = time.perf_counter()
        for _ in range(3):
            if settings["uncertainty"] == "mc_dropout":
                uncertainty.mc_dropout(im.physical, xs, n_samples=settings["n_samples"], batch_size=BATCH,
                                       seed=0)
            else:
                uncertainty.point(im.physical, xs, batch_size=BATCH)
        return time.perf_counter() - t0

    def reader(units: list, stop: Any) -> None:
        while not stop.is_set():
            for u in units[:4]:
                catalog_reading.read_prepared_unit(u, im, {"resample": None})

    def spin(units: list, stop: Any) -> None:
        while not stop.is_set():
            for _ in range(100_000):
                pass

    def beside(units: list, kind: str) -> float:
        fork = multiprocessing.get_context("fork")
        stop = fork.Event() if kind != "thread" else threading.Event()
        target = spin if kind == "spinning" else reader
        other = (fork.Process if kind != "thread" else threading.Thread)(target=target, args=(units, stop))
        other.start()
        time.sleep(0.05)
        try:
            return forward()
        finally:
            stop.set()
            other.join()

    out = {}
    for src_name, src in sources.items():
        items, _ = expand_inputs([src])
        units, _ = plan_units(items, files_per_unit=per_unit, rows_per_unit=per_unit)
        best = [float("inf")] * 4
        for _ in range(rounds):
            for k, kind in enumerate((None, "thread", "process", "spinning")):
                best[k] = min(best[k], forward() if kind is None else beside(units, kind))
        out[src_name] = tuple(best)
    return out


def run(quick: bool = False, rounds: int = 3, tuned_allocator: bool = False, n: dict | None = None,
        readers: tuple[str, ...] = READERS, unit_sizes: tuple[int, ...] = ()) -> dict:
    """Measure every row (see the module docstring) and return the numbers as a dict. ``unit_sizes``:
    also measure APOGEE Net's end-to-end runs with the reading process at each of these spectra per
    unit (``files_per_unit`` = ``rows_per_unit``; the same spectra, so fewer units for larger ones)."""
    import torch

    sys.path.insert(0, str(HERE))
    from continuum import make_spectra
    from starlabels.inference.predict import resolve

    if tuned_allocator:
        from starlabels.process import tune_process

        tune_process()
    torch.set_num_threads(1)
    sizes = n or ({"APOGEE Net, point estimates": 512, "BCNN, MC dropout (100 passes)": 64} if quick else
                  {"APOGEE Net, point estimates": 4096, "BCNN, MC dropout (100 passes)": 512})
    flux, error, bitmask, mask = make_spectra(max(sizes.values()), 0)
    flux, error = flux.astype(np.float32), error.astype(np.float32)
    load0 = os.getloadavg()[0]
    results: dict[str, Any] = {"threads": 1, "tuned_allocator": tuned_allocator, "batch_size": BATCH,
                               "machine": machine.describe(),
                               "rounds": rounds, "models": {}}
    tmp = Path(tempfile.mkdtemp(prefix="starlabels_e2e_"))
    try:
        for name, (tm, settings) in build_models(mask).items():
            k = sizes[name]
            sources = write_inputs(tmp / f"in{k}", flux[:k], error[:k], bitmask[:k])
            im = resolve(tm)
            x = preprocessed(im, flux[:k], error[:k], bitmask[:k])
            per_unit = max(1, k // UNITS)

            rates, paired = measure(im, settings, x, sources, per_unit, rounds, tmp, readers)
            breakdown = {src: time_breakdown(im, settings, path, per_unit, tmp)
                         for src, path in sources.items()}
            shared = contention(im, settings, x, sources, per_unit, rounds)
            results["models"][name] = {"n_spectra": k, "spectra_per_unit": per_unit, "contention": shared,
                                       **_rates(k, rates), "paired_ratios": paired,
                                       "breakdown": breakdown}
            if unit_sizes and name.startswith("APOGEE Net"):
                results["models"][name]["unit_sizes"] = by_unit = {}
                for size in unit_sizes:
                    r, p = measure(im, settings, x, sources, size, rounds, tmp, ("process",))
                    by_unit[str(size)] = {"units": -(-k // size), **_rates(k, r), "paired_ratios": p}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average"] = (load0, os.getloadavg()[0])
    return results


def _rates(k: int, seconds: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Spectra/s of ``k`` spectra from :func:`measure`'s best (whole run, once the first unit is read)
    seconds per configuration."""
    return {"rates": {s: k / t for s, (t, _) in seconds.items()},
            "steady_rates": {s: k / t for s, (_, t) in seconds.items()}}


def _paired_cells(pairs: list) -> str:
    """Two table cells, "median [lowest, highest]" of the whole-run and of the steady paired ratios."""
    whole, steady = np.array(pairs).T
    return (f"{np.median(whole):.2f} [{whole.min():.2f}, {whole.max():.2f}] | "
            f"{np.median(steady):.2f} [{steady.min():.2f}, {steady.max():.2f}]")


def markdown_section(results: dict, heading: str = "##") -> str:
    """The results of :func:`run` as a markdown section (a table per network and the ratios)."""
    lines = [
        f"{heading} End-to-end `predict` (catalog) vs the bare network forward",
        "",
        f"Made by `bench/end_to_end.py` on {results.get('machine', 'an unnamed CPU')}: torch threads = "
        f"{results['threads']} for every row (the end-to-end "
        "rows also run the process or thread that reads and prepares the next unit), float32 input, batch "
        f"{results['batch_size']}, "
        f"{'starlabels.tune_process' if results['tuned_allocator'] else 'glibc-default'} allocator for "
        f"every row; rows interleaved, best of {results['rounds']} rounds; load average "
        f"{results['load_average'][0]:.1f} at start, {results['load_average'][1]:.1f} at end. End-to-end = "
        "`run_catalog` from raw apStar-grid spectra (an HDF5 dataset, or a folder of apStar FITS files) to a "
        "Parquet catalog: planning, reading, grid checks, preprocessing, network, flags, parts files and the "
        "catalog writer. Bare forward = `uncertainty.point` / `uncertainty.mc_dropout` on the preprocessed "
        "tensor, run just before each end-to-end run and once after the last (best of all of them in the "
        "first table). Target: "
        "end-to-end ≥ 0.90 × bare forward. \"Once the first unit is read\": from the "
        "moment the first unit reaches the network to the end, i.e. without the pipeline's fill (the first "
        "unit is read and prepared before the network can start; a survey run of hundreds of units pays it "
        "once), which is the rate the CPU hours for 250,000 stars are computed from.",
        "",
    ]
    for name, m in results["models"].items():
        r, steady = m["rates"], m.get("steady_rates", m["rates"])
        bare = r["bare forward"]
        lines += [f"**{name}** ({m['n_spectra']} spectra, {m['spectra_per_unit']} per unit)", "",
                  "| configuration | spectra/s, whole run | / bare forward | spectra/s once the first unit "
                  "is read | / bare forward | CPU h for 250,000 stars |",
                  "|---|---:|---:|---:|---:|---:|"]
        for s, v in r.items():
            w = steady[s]
            lines.append(f"| {s} | {v:.1f} | {v / bare:.2f} | {w:.1f} | {w / bare:.2f} | "
                         f"{250_000 / w / 3600:.2f} |")
        lines.append("")
        if m.get("paired_ratios"):
            lines += ["Paired ratios: the bare forward divided by each end-to-end run, the bare forward "
                      "being the mean of the one measured just before the run and the one just after it "
                      "(a machine drifting in speed affects both sides alike), median [lowest, highest] over "
                      "the rounds:", "",
                      "| configuration | whole run / bare forward "
                      "| once the first unit is read / bare forward |",
                      "|---|---:|---:|"]
            for s_, pairs in m["paired_ratios"].items():
                lines.append(f"| {s_} | {_paired_cells(pairs)} |")
            lines.append("")
        if m.get("unit_sizes"):
            lines += ["The same spectra in units of other sizes (`files_per_unit` = `rows_per_unit`; "
                      "reading process; the bare forward called on one unit's spectra at a time, as the "
                      "catalog does). Each unit costs bookkeeping besides its spectra (its predict call, "
                      "catalog rows, parts file and done-marker): this is what chose the default of 256 "
                      "files per unit (`FILES_PER_UNIT`). Paired ratios as above, median [lowest, "
                      "highest]:", "",
                      "| spectra per unit | units | configuration | spectra/s once the first unit is read "
                      "| whole run / bare forward | once the first unit is read / bare forward |",
                      "|---:|---:|---|---:|---:|---:|"]
            for size, u in m["unit_sizes"].items():
                for s_, pairs in u["paired_ratios"].items():
                    lines.append(f"| {size} | {u['units']} | {s_} | {u['steady_rates'][s_]:.1f} | "
                                 f"{_paired_cells(pairs)} |")
            lines.append("")
        if m.get("contention"):
            lines += ["The bare forward (3 calls of one unit's spectra) alone, next to a thread and next to "
                      "a process reading and preparing units of each source in a loop, as the catalog's "
                      "readers do, and next to a process that only spins (a Python loop: no file, no "
                      f"array) (best of {results['rounds']}): what sharing 2 cores (and, with the "
                      "thread, the GIL) costs the network, and how much of it any busy second core costs.",
                      "",
                      "| source | alone | next to a reading thread | ratio | next to a reading process "
                      "| ratio | next to a spinning process | ratio |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for src_name, (alone, thread, process, *spinning) in m["contention"].items():
                spun = (f"{spinning[0]:.3f} s | {spinning[0] / alone:.2f}x" if spinning else "– | –")
                lines.append(f"| {src_name} | {alone:.3f} s | {thread:.3f} s | {thread / alone:.2f}x | "
                             f"{process:.3f} s | {process / alone:.2f}x | {spun} |")
            lines.append("")
        if m.get("breakdown"):
            srcs = list(m["breakdown"])
            steps = list(next(iter(m["breakdown"].values())))
            lines += ["Where the time goes (one run without prefetch; seconds inside each step, summed over "
                      "threads):", "", "| step | " + " | ".join(srcs) + " |",
                      "|---|" + "---:|" * len(srcs)]
            for step in steps:
                lines.append(f"| {step} | " + " | ".join(f"{m['breakdown'][s_].get(step, 0.0):.2f} s"
                                                        for s_ in srcs) + " |")
            lines.append("")
    return "\n".join(lines)


def section(quick: bool = False, heading: str = "##", rounds: int | None = None) -> str:
    """Measure (:func:`run`) and return the markdown section (:func:`markdown_section`) in one call."""
    return markdown_section(run(quick=quick, rounds=rounds or (2 if quick else 3)), heading)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer spectra")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best rates, median ratios)")
    ap.add_argument("--readers", default=",".join(READERS),
                    help=f"comma-separated catalog readers to measure, of {', '.join(READERS)}")
    ap.add_argument("--unit-sizes", default="",
                    help="comma-separated spectra per unit at which to also measure APOGEE Net's runs with "
                         "the reading process (e.g. 64,256,1024)")
    ap.add_argument("--tuned-allocator", action="store_true",
                    help="apply starlabels.tune_process to this process (every row)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    ap.add_argument("--out", type=Path, default=None, help="also write the section to this markdown file")
    a = ap.parse_args()
    os.environ.setdefault("STARLABELS_NO_PROGRESS", "1")
    readers = tuple(r.strip() for r in a.readers.split(",") if r.strip())
    if not readers or set(readers) - set(READERS):
        ap.error(f"--readers takes names among {', '.join(READERS)}; got {a.readers!r}")
    try:
        unit_sizes = tuple(int(v) for v in a.unit_sizes.split(",") if v.strip())
    except ValueError:
        ap.error(f"--unit-sizes takes comma-separated whole numbers; got {a.unit_sizes!r}")
    if any(v < 1 for v in unit_sizes):
        ap.error(f"--unit-sizes must be positive; got {a.unit_sizes!r}")
    results = run(quick=a.quick, rounds=a.rounds, tuned_allocator=a.tuned_allocator, readers=readers,
                  unit_sizes=unit_sizes)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    text = markdown_section(results, "#")
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
