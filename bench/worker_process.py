"""Run a bench script again in a fresh process (its ``--worker`` mode) and read back its result.

Benchmarks that time one variant per process (the code before a change from another ``src``, a
backend, an allocator setting) start themselves with worker arguments; the worker prints its result
as JSON on its last stdout line. One implementation for ``bench/predict_throughput.py``,
``bench/prepare.py`` and ``bench/fits_read.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Thread settings of the numeric libraries for a one-thread worker.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_worker(script: str | os.PathLike, args: list[str], *, src: str | os.PathLike | None = None,
               one_thread: bool = False, timeout: float | None = None,
               cwd: str | os.PathLike | None = None) -> Any:
    """Run ``python script *args`` (progress bars off; ``src`` first on PYTHONPATH, e.g. the code
    before a change; ``one_thread``: OpenMP/BLAS on one thread) → its last stdout line as JSON.
    A failing worker raises RuntimeError with the end of its stderr."""
    env = dict(os.environ, STARLABELS_NO_PROGRESS="1", **(ONE_THREAD if one_thread else {}))
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, str(Path(script).resolve()), *args], capture_output=True,
                         text=True, env=env, timeout=timeout, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(f"worker {Path(script).name} {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
