"""Time one continuum normaliser in a fresh process: cold (first call) and warm (best of repeats).

Run by ``bench/continuum.py`` in starlabels' venv (``--impl starlabels``) and in astroNN's own venv
(``--impl astronn``, ``bench/.astronn-venv``, astroNN 1.1.0); needs only numpy and the normaliser,
so the same file runs in both. Reads ``IN.npz`` (``flux``, ``error`` (N, 8575) float64 apStar-grid
spectra, ``bitmask`` (N, 8575) int, ``mask`` (7514,) bool DR17 continuum pixels) and prints one JSON
line: ``cold_s`` (the first call in this process: fresh output pages, as a one-off script sees),
``warm_s`` (best of ``--repeat`` further calls; starlabels reuses one output pair through ``out=``,
astroNN allocates as it always does — it has no way to reuse outputs), the same as process CPU
time (``cold_cpu_s``, ``warm_cpu_s``; steadier than wall time on a shared machine), and ``n``.

    python bench/continuum_timing.py --impl starlabels IN.npz [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=["starlabels", "astronn"], required=True)
    ap.add_argument("data")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with np.load(a.data) as d:
        flux, error, bitmask, mask = d["flux"], d["error"], d["bitmask"], d["mask"]
    if a.impl == "astronn":
        from astroNN.apogee import apogee_continuum

        def cold():
            return apogee_continuum(flux, error, cont_mask=mask, bitmask=bitmask, dr=17)

        warm = cold
    else:
        from starlabels.preprocess.continuum import continuum_normalise

        def cold():
            return continuum_normalise(flux, error, bitmask, continuum_mask=mask)

        out = None

        def warm():
            nonlocal out
            if out is None:  # the streaming caller's pair, allocated (and faulted in) once
                out = tuple(np.empty((flux.shape[0], mask.size)) for _ in range(2))
                continuum_normalise(flux, error, bitmask, continuum_mask=mask, out=out)
            return continuum_normalise(flux, error, bitmask, continuum_mask=mask, out=out)

    t0, c0 = time.perf_counter(), time.process_time()
    cold()
    cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    warm()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        warm()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    print(json.dumps({"impl": a.impl, "n": int(flux.shape[0]), "cold_s": cold_s, "warm_s": best,
                      "cold_cpu_s": cold_cpu, "warm_cpu_s": best_cpu}))


if __name__ == "__main__":
    main()
