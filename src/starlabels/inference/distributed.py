"""Catalogs on a Dask cluster: the units of :mod:`starlabels.inference.catalog` spread over workers.

The input list is planned into units exactly as in the single-process run (same order, same keys,
same per-unit seeds), the pending units are split into contiguous **partitions** (a few per worker,
for load balance), and one task per partition runs on the cluster. A task gets the model *path*,
loads the model through a per-worker cache (:func:`cached_model`, keyed by the folder, its
config's modification time and the worker) — so each worker loads it once — and writes the
partition's unit parts into the shared ``<OUT>.parts`` folder. The client then assembles the
catalog. Because a unit's numbers depend only on the unit (never on which worker ran it, nor on
the partitioning), the catalog is identical to the single-process one run on the same torch
thread count per task (float32 sums are ordered by the thread count: on another count the values
agree to rounding), and an interrupted distributed run resumes like a single-process one.

The output folder must be visible to every worker (a shared filesystem) when the cluster spans
machines. Default cluster: a :class:`distributed.LocalCluster` with ``workers`` worker processes of
``threads_per_worker`` threads; ``scheduler="tcp://host:8786"`` uses an existing cluster.

Torch's intra-op thread count is process state (``torch.set_num_threads`` is not thread-safe), so
it belongs to whoever owns the worker processes, and a task leaves it alone unless the owner opted
in with the worker plugin :class:`TorchThreads` (``client.register_plugin(TorchThreads(1))``): it
applies to every worker, also those started later, and gives the workers their setting back when
unregistered.
:func:`run_distributed` registers it itself on the worker processes of the ``LocalCluster`` it
starts (``threads_per_worker``), and on any cluster for the run when ``torch_threads`` is given
(``starlabels predict --workers/--scheduler`` passes ``--threads-per-worker``).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

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
#: TorchThreads plugins set up in this process: name → [threads asked for, the process's setting
#: before it, workers holding it].
_THREADS_HELD: dict[str, list[int]] = {}
_THREADS_LOCK = threading.Lock()


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


class TorchThreads(WorkerPlugin):
    """Dask worker plugin: ``n`` torch intra-op threads for the tasks of every worker of the
    cluster it is registered with (``client.register_plugin(TorchThreads(n))``), workers started
    later included. Unregistering it (``client.unregister_worker_plugin(plugin.name)``) gives the
    workers their setting back (several workers in one process: when the last one lets go).

    Torch keeps the setting per OS thread once a thread has used it (OpenMP), and a worker runs
    tasks in executor threads, not in the thread that sets the plugin up. So ``setup`` sets the
    process's value (which threads started later begin with) and :func:`run_partition` makes its
    executor thread follow the registered value for the task, giving the thread its own setting
    back after it. Register it only on workers whose processes are yours: a worker of a
    ``processes=False`` cluster is a thread of the client's process."""

    idempotent = False

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or int(n) < 1:
            raise StarlabelsError(f"torch threads must be a positive integer, got {n!r}")
        self.n = int(n)
        self.name = f"starlabels-torch-threads-{uuid.uuid4().hex[:12]}"

    def setup(self, worker: Any) -> None:
        import torch

        with _THREADS_LOCK:
            held = _THREADS_HELD.setdefault(self.name, [self.n, torch.get_num_threads(), 0])
            held[2] += 1
            torch.set_num_threads(self.n)

    def teardown(self, worker: Any) -> None:
        import torch

        with _THREADS_LOCK:
            held = _THREADS_HELD.get(self.name)
            if held is None:
                return
            held[2] -= 1
            if held[2] <= 0:
                torch.set_num_threads(held[1])
                del _THREADS_HELD[self.name]


def registered_torch_threads() -> int | None:
    """The torch threads asked for by the :class:`TorchThreads` plugin set up last in this
    process and still registered; None without one."""
    with _THREADS_LOCK:
        return next(reversed(_THREADS_HELD.values()))[0] if _THREADS_HELD else None


@contextmanager
def _registered_threads() -> Iterator[None]:
    """Run the block with this thread on the registered TorchThreads value (if any); the thread's
    own setting comes back afterwards. Without a registered plugin nothing is changed."""
    import torch

    wanted, own = registered_torch_threads(), torch.get_num_threads()
    if wanted is None or wanted == own:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(own)


def run_partition(model_path: str, units: list[Unit], out: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Dask task: predict and store every unit of one partition. Returns a small summary.

    Units already done (their marker exists: a retry of this task after its worker died, or a
    resumed run) are skipped, so a rescheduled partition neither loses nor duplicates rows. A unit
    failing as a whole is retried and recorded (:func:`~starlabels.inference.catalog.run_unit_safely`).
    The next unit is read in a background thread while one is computed
    (:func:`~starlabels.inference.catalog.run_units`). Torch threads: the worker's own setting,
    unless its owner registered a :class:`TorchThreads` plugin (then that value, for this task).
    """
    with _registered_threads():
        im = cached_model(model_path)
        pdir = parts_dir(out)
        # units in order; each stored as soon as it is done (resumable)
        todo = [u for u in units if not (pdir / f"{u.name}.json").exists()]
        counts = run_units(im, todo, pdir, settings, progress_bar=False)
        rows, failed = sum(n or 0 for n in counts), sum(n is None for n in counts)
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
    torch_threads: int | None = None,
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
    threads_per_worker=threads_per_worker, processes=processes)`` closed at the end.
    ``torch_threads``: torch intra-op threads in every worker for the run (a :class:`TorchThreads`
    plugin, unregistered at the end, which gives the workers their setting back). None: the
    worker processes of the LocalCluster started here (``processes=True``) get
    ``threads_per_worker`` (they are this run's); other workers keep theirs (an existing cluster is
    its owner's, and the workers of a ``processes=False`` cluster are threads of this process). Other
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
        return _run_locked(client, scheduler, workers, threads_per_worker, processes, torch_threads,
                           partitions_per_worker, model_path, im, inputs, out, fmt, settings, files_per_unit,
                           rows_per_unit, overwrite, keep_parts)


def _run_locked(client, scheduler, workers, threads_per_worker, processes, torch_threads,
                partitions_per_worker, model_path, im, inputs, out, fmt, settings, files_per_unit,
                rows_per_unit, overwrite, keep_parts) -> CatalogResult:
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
            if torch_threads is None and processes:  # worker processes of our own
                torch_threads = threads_per_worker
        own_client = True
    else:
        own_client = False
    plugin = None
    try:
        if torch_threads is not None:
            plugin = TorchThreads(torch_threads)
            client.register_plugin(plugin)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or int(workers))
        parts = partition(pending, n_workers * max(1, int(partitions_per_worker)))
        futures = [
            client.submit(run_partition, model_path, p, str(out), settings,
                          pure=False, key=f"starlabels-partition-{p[0].name}")
            for p in parts
        ]
        for fut in progress(as_completed(futures), desc="partitions", total=len(futures), unit="part"):
            fut.result()  # re-raises a worker's error here
    finally:
        if plugin is not None:  # gives the workers (maybe threads of this process) their setting back
            client.unregister_worker_plugin(plugin.name)
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()
    res = assemble(im.label_names, im.label_units, units, out, fmt, skipped,
                     meta=catalog_meta(im, settings), keep_parts=keep_parts)
    res.units_computed = len(pending)
    return res
