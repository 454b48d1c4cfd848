"""Peak memory of survey simulation vs N: all at once (``simulate().write_hdf5``, the CLI before
issue 17) against streaming (``survey_stream.simulate_to_hdf5``, the CLI now).

Each (mode, N) runs in its own subprocess; peak RSS is that child's own ``ru_maxrss`` (from
``os.wait4``), wall time beside it. APOGEE, built-in generator, seed 0, chunks of
250 stars. For the smallest N the two HDF5 files are compared dataset by dataset (bit-identical).

    python bench/simulate_memory.py [--n 500,2000,4000] [--modes once,stream]
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

CHILD = """
import sys
from starlabels.data.survey import GeneratorSource, SurveyConfig, SurveySimulator
from starlabels.data.survey_stream import simulate_to_hdf5
mode, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sim = SurveySimulator(GeneratorSource.default(0), SurveyConfig(n_stars=n, seed=0))
if mode == "once":
    sim.simulate().write_hdf5(path)
else:
    simulate_to_hdf5(sim, path, chunk_rows=250)
"""


def measure(mode: str, n: int, path: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(n), str(path)])
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    if status != 0:
        raise RuntimeError(f"{mode} n={n} failed with status {status}")
    return {"mode": mode, "n": n, "peak_rss_mb": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0}


def identical(a: Path, b: Path) -> bool:
    import h5py
    import numpy as np

    with h5py.File(a) as fa, h5py.File(b) as fb:
        names: list[str] = []
        fa.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
        return bool(names) and all(k in fb and np.array_equal(fa[k][()], fb[k][()]) for k in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="500,2000,4000")
    ap.add_argument("--modes", default="once,stream")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sizes = [int(v) for v in a.n.split(",")]
    modes = a.modes.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for mode in modes:
                rows.append(measure(mode, n, Path(tmp) / f"{mode}_{n}.h5"))
                print(f"  {mode:<6s} n={n:>7d}: peak RSS {rows[-1]['peak_rss_mb']:8.0f} MB, "
                      f"{rows[-1]['seconds']:6.1f} s", flush=True)
        same = None
        if {"once", "stream"} <= set(modes):
            same = identical(Path(tmp) / f"once_{sizes[0]}.h5", Path(tmp) / f"stream_{sizes[0]}.h5")
            print(f"  n={sizes[0]}: HDF5 datasets bit-identical between the two modes: {same}")
    if a.json:
        print(json.dumps({"rows": rows, "identical": same}))


if __name__ == "__main__":
    main()
