"""Decoding HDF5 rows for a catalog run: the reading process's largest cost, before and after.

    python bench/hdf5_decode.py [--rows 1024] [--rounds 7]

A catalog run from a starlabels HDF5 dataset reads each unit's rows with
:func:`starlabels.data.hdf5_chunks.read_row_range` in the reading process, on the core beside the
network's. The dataset is what :class:`starlabels.data.hdf5.DatasetWriter` writes by default
(chunks of 16 whole rows, shuffle + deflate level 4) for synthetic apStar spectra
(``bench/continuum.make_spectra``: flux and error float32, bitmask int32, 8575 px). Side by side in
one process, rounds interleaved, same file and rows:

* per chunk of flux (16 × 8575 float32 = 549 kB): inflate with :mod:`zlib` (the former code) vs
  :mod:`zlib_ng` (now); un-shuffle by a NumPy transpose of the byte planes (former) vs a strided copy
  of each plane (now);
* per 256-row unit of flux, error and bitmask: ``ds[a:b]`` (h5py, which decodes holding the GIL),
  the former ``read_row_range`` (zlib + transpose, reproduced below as :func:`former_read_row_range`)
  and the library's;
* per 256-row unit, everything the reading process does for APOGEE Net (raw-flux preprocessing):
  ``catalog_reading.read_prepared_unit`` with the former decoder patched in vs the library as it is.

Printed: best and median over ``--rounds`` (ms), and former / now ratios of the medians. Single
thread (NumPy's and the decoders' code is single-threaded; torch is set to 1 thread), glibc allocator
defaults, the file in the page cache (read once before timing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
from zlib_ng import zlib_ng

HERE = Path(__file__).resolve().parent
ROWS_PER_UNIT = 256


def former_read_row_range(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """``read_row_range`` before this change, for the layout the bench's file has (whole-row chunks,
    shuffle then deflate): each chunk inflated by zlib into new bytes, un-shuffled by a transpose into
    a new array, then copied into the result (a filter the chunk's mask says was skipped is skipped)."""
    rows = ds.chunks[0]
    out = np.empty((stop - start, *ds.shape[1:]), ds.dtype)
    for c in range(start // rows, (stop - 1) // rows + 1):
        c0 = c * rows
        mask, data = ds.id.read_direct_chunk((c0, 0))
        if not mask & 0b10:  # deflate, filter 1
            data = zlib.decompress(data)
        if not mask & 0b01:  # shuffle, filter 0
            data = np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(ds.dtype.itemsize, -1).T)
        chunk = np.frombuffer(data, ds.dtype).reshape(ds.chunks)
        a, b = max(start, c0), min(stop, c0 + rows)
        out[a - start:b - start] = chunk[a - c0:b - c0]
    return out


def transpose_planes(stored: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    """The former un-shuffle: (itemsize, n) byte planes transposed into n elements."""
    return np.frombuffer(np.ascontiguousarray(np.frombuffer(stored, np.uint8).reshape(dtype.itemsize, -1).T),
                         dtype)


def copy_planes(stored: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    """The library's un-shuffle: plane k copied into byte k of each element of the output."""
    out = np.empty(n, dtype)
    elements = out.view(np.uint8).reshape(-1, dtype.itemsize)
    planes = np.frombuffer(stored, np.uint8).reshape(dtype.itemsize, -1)
    for k in range(dtype.itemsize):
        elements[:, k] = planes[k]
    return out


def timed(rows: dict[str, Callable[[], object]], rounds: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each row, ``rounds`` interleaved rounds of ``repeat`` calls."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for f in rows.values():  # warm-up
        f()
    for _ in range(rounds):
        for name, f in rows.items():
            t = time.perf_counter()
            for _ in range(repeat):
                f()
            times[name].append((time.perf_counter() - t) / repeat)
    return times


def table(title: str, times: dict[str, list[float]], pairs: list[tuple[str, str]]) -> str:
    lines = [f"**{title}**", "", "| row | best ms | median ms |", "|---|---:|---:|"]
    for name, ts in times.items():
        lines.append(f"| {name} | {min(ts) * 1e3:.3f} | {statistics.median(ts) * 1e3:.3f} |")
    lines.append("")
    for former, now in pairs:
        ratio = statistics.median(times[former]) / statistics.median(times[now])
        lines.append(f"- {former} / {now}: {ratio:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1024, help="spectra in the file (default 1024)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(HERE))
    from continuum import make_spectra
    from end_to_end import build_models
    from starlabels.data import hdf5 as hdf5_module
    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.data.hdf5_chunks import read_row_range
    from starlabels.inference.catalog_inputs import expand_inputs, plan_units
    from starlabels.inference.catalog_reading import read_prepared_unit
    from starlabels.inference.predict import resolve

    torch.set_num_threads(1)
    flux, error, bitmask, mask = make_spectra(args.rows, 0)
    flux, error = flux.astype(np.float32), error.astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="starlabels_hdf5_decode_"))
    try:
        path = tmp / "spectra.h5"
        with DatasetWriter(path, flux.shape[1], "apstar") as writer:
            writer.append(flux, error, bitmask, meta={"apogee_id": [f"2M{i:08d}" for i in range(len(flux))]})
        with h5py.File(path) as f:
            datasets = [f[name] for name in ("flux", "error", "bitmask")]
            ds = datasets[0]
            layout = (f"chunks {ds.chunks}, filters {ds.compression} level {ds.compression_opts}, "
                      f"shuffle {ds.shuffle}; dtypes {', '.join(str(d.dtype) for d in datasets)}")
            _, raw = ds.id.read_direct_chunk((0, 0))
            stored = zlib.decompress(raw)
            n = int(np.prod(ds.chunks))
            for a, b in ((zlib.decompress, zlib_ng.decompress), (transpose_planes, copy_planes)):
                first, second = (a(raw), b(raw)) if a is zlib.decompress else (a(stored, ds.dtype, n),
                                                                            b(stored, ds.dtype, n))
                assert bytes(first) == bytes(second), "the two decoders disagree"
            chunk = timed({"inflate, zlib": lambda: zlib.decompress(raw),
                           "inflate, zlib-ng": lambda: zlib_ng.decompress(raw),
                           "un-shuffle, transpose": lambda: transpose_planes(stored, ds.dtype, n),
                           "un-shuffle, copy per plane": lambda: copy_planes(stored, ds.dtype, n)},
                          args.rounds, 50)

            def unit(reader: Callable) -> Callable[[], object]:
                return lambda: [reader(d, 0, ROWS_PER_UNIT) for d in datasets]

            for d in datasets:
                want = d[0:ROWS_PER_UNIT]
                assert former_read_row_range(d, 0, ROWS_PER_UNIT).tobytes() == want.tobytes()
                assert read_row_range(d, 0, ROWS_PER_UNIT).tobytes() == want.tobytes()
            rows = timed({"h5py ds[a:b]": unit(lambda d, a, b: d[a:b]),
                          "read_row_range, former": unit(former_read_row_range),
                          "read_row_range, now": unit(read_row_range)}, args.rounds, 3)

        im = resolve(build_models(mask)["APOGEE Net, point estimates"][0])
        items, _ = expand_inputs([path])
        units, _ = plan_units(items, rows_per_unit=ROWS_PER_UNIT)

        def former_unit() -> object:
            with mock.patch.object(hdf5_module, "read_row_range", former_read_row_range):
                return read_prepared_unit(units[0], im, {})

        def network_input(read: tuple) -> list[np.ndarray]:
            return [a for b in read[0].values() for _, arrays in b.prepared.chunks for a in arrays]

        for a, b in zip(network_input(former_unit()), network_input(read_prepared_unit(units[0], im, {})),
                        strict=True):
            assert a.tobytes() == b.tobytes(), "the prepared unit differs with the former decoder"
        reading = timed({"read + prepare, former decoder": former_unit,
                         "read + prepare, now": lambda: read_prepared_unit(units[0], im, {})}, args.rounds, 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("### Decoding HDF5 rows (bench/hdf5_decode.py)\n")
    print(f"{args.rows} synthetic apStar spectra written by DatasetWriter ({layout}); 1 thread, glibc "
          f"allocator defaults, file in the page cache; {args.rounds} interleaved rounds.\n")
    print(table("Per chunk of flux (16 rows × 8575 float32)", chunk,
                [("inflate, zlib", "inflate, zlib-ng"),
                 ("un-shuffle, transpose", "un-shuffle, copy per plane")]))
    print(table(f"Per unit of {ROWS_PER_UNIT} rows (flux, error, bitmask)", rows,
                [("read_row_range, former", "read_row_range, now"),
                 ("h5py ds[a:b]", "read_row_range, now")]))
    print(table(f"The reading process's work per unit of {ROWS_PER_UNIT} rows, APOGEE Net (raw flux)",
                reading, [("read + prepare, former decoder", "read + prepare, now")]))


if __name__ == "__main__":
    main()
