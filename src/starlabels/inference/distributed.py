"""Catalogs on a Dask cluster: the units of :mod:`starlabels.inference.catalog` spread over workers.

The input list is planned into units exactly as in the single-process run (same order, same keys,
same per-unit seeds), the pending units are split into contiguous **partitions** (a few per worker,
for load balance), and one task per partition runs on the cluster. A task gets the model *path*,
loads the model through a per-worker cache (:func:`cached_model`, keyed by the folder, its
config's modification time and the worker) — so each worker loads it once — and writes the
partition's unit parts into the shared ``<OUT>.parts`` folder. The client then assembles the
catalog. Because a unit's numbers depend only on the unit (never on which worker ran it, nor on
the partitioning), the catalog is identical to the single-process one, and an interrupted
distributed run resumes like a single-process one.

The output folder must be visible to every worker (a shared filesystem) when the cluster spans
machines. Default cluster: a :class:`distributed.LocalCluster` with ``workers`` worker processes of
``threads_per_worker`` threads; ``scheduler="tcp://host:8786"`` uses an existing cluster.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlabels.errors import StarlabelsError
from starlabels.inference.catalog import catalog_meta, run_settings, run_units
from starlabels.inference.catalog_inputs import FILES_PER_UNIT, ROWS_PER_UNIT, Unit
from starlabels.inference.catalog_parts import CatalogResult, assemble, parts_dir, prepare_run
from starlabels.inference.catalog_tables import guess_format
from starlabels.inference.inference_model import InferenceModel, resolve
from starlabels.output_lock import OutputLock
from starlabels.utils import progress

_CACHE: dict[tuple[str, float, str], InferenceModel] = {}
_CACHE_LOCK = threading.Lock()
#: How often each worker loaded a model (path → count), for tests and diagnostics.
LOAD_COUNTS: dict[str, int] = {}


def _worker_id() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def cached_model(path: str | os.PathLike) -> InferenceModel:
    """The model folder ``path`` loaded once per worker (and per change of its config.json)."""
    p = Path(path).resolve()
    cfg = p / "config.json"
    mtime = cfg.stat().st_mtime if cfg.exists() else -1.0
    key = (str(p), mtime, _worker_id())
    with _CACHE_LOCK:
        im = _CACHE.get(key)
        if im is None:
            im = resolve(p)
            _CACHE[key] = im
            LOAD_COUNTS[key[2]] = LOAD_COUNTS.get(key[2], 0) + 1
        return im


def run_partition(
    model_path: str, units: list[Unit], out: str, settings: dict[str, Any], torch_threads: int | None
) -> dict[str, Any]:
    """Dask task: predict and store every unit of one partition. Returns a small summary.

    Units already done (their marker exists: a retry of this task after its worker died, or a
    resumed run) are skipped, so a rescheduled partition neither loses nor duplicates rows. A unit
    failing as a whole is retried and recorded (:func:`~starlabels.inference.catalog.run_unit_safely`).
    The next unit is read in a background thread while one is computed
    (:func:`~starlabels.inference.catalog.run_units`). ``torch_threads`` applies while the task runs;
    the worker's setting is restored after it.
    """
    import torch

    before = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    try:
        im = cached_model(model_path)
        pdir = parts_dir(out)
        # units in order; each stored as soon as it is done (resumable)
        todo = [u for u in units if not (pdir / f"{u.name}.json").exists()]
        counts = run_units(im, todo, pdir, settings, progress_bar=False)
        rows, failed = sum(n or 0 for n in counts), sum(n is None for n in counts)
    finally:
        torch.set_num_threads(before)
    return {"worker": _worker_id(), "units": len(units), "rows": rows, "failed": failed}


def partition(units: list[Unit], n_partitions: int) -> list[list[Unit]]:
    """Split ``units`` into at most ``n_partitions`` contiguous, near-equal, non-empty lists."""
    n = max(1, min(int(n_partitions), len(units)))
    size, extra = divmod(len(units), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        if stop > start:
            out.append(units[start:stop])
        start = stop
    return out


def run_distributed(
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    format: str | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    client: Any = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    partitions_per_worker: int = 4,
    uncertainty: str | None = None,
    n_samples: int = 100,
    seed: int = 0,
    batch_size: int = 256,
    device: str | None = None,
    calibrated: bool = True,
    files_per_unit: int = FILES_PER_UNIT,
    rows_per_unit: int = ROWS_PER_UNIT,
    overwrite: bool = False,
    keep_parts: bool = False,
    resample: str | None = None,
) -> CatalogResult:
    """Write the catalog ``out`` for ``inputs`` with the model folder ``model_path`` on Dask.

    Cluster: ``client`` (an existing :class:`distributed.Client`), else ``scheduler`` (address of
    a running scheduler), else a new ``LocalCluster(n_workers=workers,
    threads_per_worker=threads_per_worker, processes=processes)`` closed at the end. Other
    arguments as :func:`starlabels.inference.catalog.run_catalog`.
    """

    model_path = str(Path(model_path).resolve())
    if not Path(model_path).is_dir():
        raise StarlabelsError(f"{model_path}: distributed inference needs a model folder path")
    fmt = guess_format(out, format)
    im = resolve(model_path)
    settings = run_settings(uncertainty=uncertainty, n_samples=n_samples, seed=seed,
                              batch_size=batch_size, device=device, calibrated=calibrated,
                              resample=resample)
    with OutputLock(out):
        return _run_locked(client, scheduler, workers, threads_per_worker, processes, partitions_per_worker,
                           model_path, im, inputs, out, fmt, settings, files_per_unit, rows_per_unit,
                           overwrite, keep_parts)


def _run_locked(client, scheduler, workers, threads_per_worker, processes, partitions_per_worker,
                model_path, im, inputs, out, fmt, settings, files_per_unit, rows_per_unit, overwrite,
                keep_parts) -> CatalogResult:
    from distributed import Client, LocalCluster, as_completed

    units, pending, skipped = prepare_run(
        im, inputs, out, settings, files_per_unit=files_per_unit, rows_per_unit=rows_per_unit,
        overwrite=overwrite,
    )
    own_cluster = None
    if client is None:
        if scheduler:
            client = Client(scheduler)
        else:
            own_cluster = LocalCluster(n_workers=int(workers), threads_per_worker=int(threads_per_worker),
                                       processes=processes, dashboard_address=None)
            client = Client(own_cluster)
        own_client = True
    else:
        own_client = False
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or int(workers))
        parts = partition(pending, n_workers * max(1, int(partitions_per_worker)))
        futures = [
            client.submit(run_partition, model_path, p, str(out), settings, threads_per_worker,
                          pure=False, key=f"starlabels-partition-{p[0].name}")
            for p in parts
        ]
        for fut in progress(as_completed(futures), desc="partitions", total=len(futures), unit="part"):
            fut.result()  # re-raises a worker's error here
    finally:
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()
    res = assemble(im.label_names, im.label_units, units, out, fmt, skipped,
                     meta=catalog_meta(im, settings), keep_parts=keep_parts)
    res.units_computed = len(pending)
    return res
