"""Label catalogs from many input files: FITS, CSV or Parquet, written incrementally and resumable.

Columns (docs/DESIGN.md, "Catalog columns"): ``SDSS_ID`` (int; -1 when the file has none — SDSS-V
files have it, DR17 apStar files do not), ``APOGEE_ID``, ``TELESCOPE`` (e.g. ``apo25m``, ``lco25m``)
and ``HDU`` (the extension the spectrum came from, e.g. ``APOGEE/APO``), ``RA``, ``DEC`` (deg),
``SNR``, ``SOURCE`` (input file; ``file.h5[row]`` for HDF5 rows), then for each label ``X``: ``X``
(physical units), ``X_ERR`` (total, calibrated; NaN when no uncertainty was computed) and the
parts that were computed, ``X_ERR_EPISTEMIC``, ``X_ERR_ALEATORIC``, ``X_ERR_NOISE``,
``X_ERR_DELTA``, ``X_ERR_FISHER`` (The Cannon), ``X_ERR_JACOBIAN`` (a Payne fit) (1σ, calibrated
like X_ERR), ``X_ERR_FLOOR`` (a ``floor`` calibration's constant part) and ``X_ERR_COVERAGE`` (the
label-coverage part), so X_ERR² = Σ parts²; then ``DOMAIN_SHIFT`` (float, the input-space
domain-shift score of :mod:`starlabels.inference.domain_shift`, > 1 = flagged; NaN when the model
has none), ``FLAG`` (int32, bits in
:mod:`starlabels.inference.flags`), ``MODEL_NAME`` (the model folder's name; ``cannon:<folder>`` /
``payne:<folder>`` for a :class:`~starlabels.models.method.LabelMethod`, so each row says which
method made it) and ``MODEL_VERSION``.

Any model works: a network's :class:`~starlabels.models.folder.TrainedModel`, a Cannon or a Payne
fitter (a LabelMethod), or the folder of any of them.

Inputs are spectrum files of any format :func:`starlabels.io.read_spectra` recognises by content
(mwmStar/mwmVisit, apStar, aspcapStar, apVisit, BOSS spec, tables), folders of them and starlabels
HDF5 datasets; a spectrum on another grid than the model's is resampled when ``resample`` is given
and otherwise listed as skipped, naming its file and HDU (:mod:`starlabels.inference.catalog_inputs`).

How the writing works (the same scheme for every output format):

1. The inputs are expanded and cut into **units** — ``files_per_unit`` files, or
   ``rows_per_unit`` consecutive rows of one HDF5 file — in a deterministic order. A unit is the
   grain of work, of resuming, of distribution over Dask workers and of random seeding (its seed is
   derived from ``seed`` and the unit's key), so a unit gives the same numbers wherever it runs.
2. Each finished unit is written to ``<OUT>.parts/unit-<index>-<key>.parquet`` (atomically: a
   temporary file renamed into place), then a ``.json`` marker with its row count and skipped
   inputs. A unit whose marker exists is done; an interrupted run, started again with the same
   arguments, skips those and only computes the rest. ``<OUT>.parts/manifest.json`` records the
   model and settings; resuming with different ones is refused (``overwrite=True`` restarts).
3. When every unit is done the parts are assembled, in unit order, into ``OUT`` (FITS via an
   astropy Table with units, CSV, or Parquet; written to a temporary file and renamed), and the
   skipped inputs are listed in ``<OUT>.skipped.tsv`` (``path<TAB>reason``). The parts folder is
   removed unless ``keep_parts``.

Reading overlaps computing: while the network runs on unit k, unit k+1 is read (files or HDF5 rows
onto the model's grid) and prepared for the network (pixel rejection and the model's
preprocessing) ahead of it — by default in a reading process on Linux, else in a thread
(``prefetch``; :mod:`~starlabels.inference.catalog_reading`). Writing overlaps computing too: unit
k's parts file and marker are written by a writer thread while the network runs on unit k+1 (at
most one write in flight, in unit order). Reading and preparing draw no random numbers and a unit's
seed depends only on the unit, so the catalog is bit-identical whichever reader runs, or with
``prefetch=False``; a unit whose read or write failed is run again in the computing thread by its
retries (a unit whose reading process died is recorded failed instead: reading it again here would
meet the same crash).

Where the pieces live: :mod:`~starlabels.inference.catalog_inputs` (inputs → units → blocks),
:mod:`~starlabels.inference.catalog_columns` (rows of a Prediction),
:mod:`~starlabels.inference.catalog_reading` (units read and prepared ahead),
:mod:`~starlabels.inference.catalog_parts` (parts folder, resume, assembly),
:mod:`~starlabels.inference.catalog_tables` (FITS/CSV/Parquet writer and reader); this module runs
units (:func:`predict_unit`, :func:`run_units`) and the single-process driver :func:`run_catalog`.

Unreadable or unsuitable inputs (missing, truncated, not a spectrum, another grid without
``resample``, wrong kind for the model) never stop a run: they are listed in the skipped file with
the reason (``file[HDU]`` for one spectrum of a multi-spectrum file). Invalid spectra inside
readable files (e.g. NaN-only) keep their row, with NaN labels and the INVALID_SPECTRUM flag.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.inference import flags as flag_bits
from starlabels.inference.catalog_columns import catalog_frame
from starlabels.inference.catalog_inputs import FILES_PER_UNIT, ID_COLUMNS, ROWS_PER_UNIT, Unit
from starlabels.inference.catalog_parts import (
    CatalogResult,
    assemble,
    atomic_write_text,
    failed_marker,
    parts_dir,
    prepare_run,
    write_unit,
)
from starlabels.inference.catalog_reading import (
    UNIT_ERRORS,
    ReadingProcessError,
    UnitRead,
    block_spectra,
    read_prepared_unit,
    read_units,
    reader_name,
)
from starlabels.inference.catalog_tables import guess_format, read_catalog, write_table
from starlabels.inference.inference_model import InferenceModel, resolve
from starlabels.inference.predict import predict
from starlabels.inference.predict_options import PredictOptions
from starlabels.output_lock import OutputLock
from starlabels.utils import progress

__all__ = [
    "UNIT_TRIES",
    "CatalogResult",
    "catalog_frame",
    "catalog_meta",
    "predict_blocks",
    "predict_unit",
    "read_catalog",
    "run_catalog",
    "run_settings",
    "run_unit",
    "run_unit_safely",
    "run_units",
    "write_table",
]

#: Tries of a unit that fails as a whole (an I/O error, a full disk) before it is recorded failed.
UNIT_TRIES: int = 3


def predict_blocks(
    im: InferenceModel, unit: Unit, read: UnitRead, settings: dict[str, Any]
) -> tuple[Any, list[tuple[str, str]]]:
    """Predict the blocks a unit was read into (:func:`~starlabels.inference.catalog_inputs.read_unit`)
    → (pandas DataFrame in catalog column order, or None when no row; skipped inputs)."""
    import pandas as pd

    blocks, skipped = read
    opts = dict(settings)
    seed = opts.pop("seed", 0)
    opts.pop("resample", None)
    options = PredictOptions(calibrated=opts.pop("calibrated", True))
    frames, order = [], []
    for i, (_, b) in enumerate(sorted(blocks.items())):
        if not b.meta:
            continue
        meta = {k: [m[k] for m in b.meta] for k in (*ID_COLUMNS, "_ORDER")}
        spectra = {"flux": b.prepared} if b.prepared is not None else block_spectra(b)
        pred = predict(im, **spectra, seed=unit.seed(seed) + i, snr=np.asarray(meta["SNR"], np.float64),
                       options=options, **opts)
        pred.flags[np.concatenate(b.resampled)] |= flag_bits.bit("RESAMPLED")
        meta["SNR"] = pred.snr
        frames.append(catalog_frame(pred, meta, im.name, im.version))
        order.append(meta["_ORDER"])
    if not frames:
        return None, skipped
    # blocks (grids, raw/preprocessed) back to the unit's input order
    rows = np.concatenate(order)
    if len(frames) == 1 and (np.diff(rows) >= 0).all():  # one block in input order (an HDF5 unit, one grid)
        return frames[0], skipped
    df = pd.concat(frames, ignore_index=True).iloc[np.argsort(rows, kind="stable")].reset_index(drop=True)
    return df, skipped


def predict_unit(
    im: InferenceModel, unit: Unit, settings: dict[str, Any]
) -> tuple[Any, list[tuple[str, str]]]:
    """Read and predict one unit → (pandas DataFrame in catalog column order, skipped inputs)."""
    return predict_blocks(im, unit, read_prepared_unit(unit, im, settings), settings)


def run_unit(
    im: InferenceModel, unit: Unit, pdir: Path, settings: dict[str, Any], read: UnitRead | None = None,
    write: Callable[..., int] = write_unit,
) -> int:
    """Predict one unit (from ``read``, its inputs already read, else reading them now) and store it in
    the parts folder ``pdir`` with ``write`` (:func:`~starlabels.inference.catalog_parts.write_unit`'s
    arguments; a background writer's hand-over in :func:`run_units`); returns its number of rows."""
    if read is None:
        read = read_prepared_unit(unit, im, settings)
    df, skipped = predict_blocks(im, unit, read, settings)
    return write(pdir, unit, df, skipped)


def run_unit_safely(im: InferenceModel, unit: Unit, pdir: Path, settings: dict[str, Any],
                    tries: int = UNIT_TRIES, read: UnitRead | BaseException | None = None,
                    write: Callable[..., int] = write_unit) -> int | None:
    """:func:`run_unit` retried up to ``tries`` times; a unit that still fails is recorded in
    ``<unit>.failed.json`` (error text) and ``None`` returned — the run goes on. Per-star problems
    never get here (they are flags); this is for a unit failing as a whole. A later success removes
    the failure record. ``read``: the unit's inputs read ahead (or the error reading them raised),
    and ``write`` the writer, both used by the first try; later tries read again and write here — except
    after :class:`~starlabels.inference.catalog_reading.ReadingProcessError`, which is recorded at once."""
    err = ""
    if isinstance(read, ReadingProcessError):
        tries = 1
    for attempt in range(max(1, int(tries))):
        try:
            if attempt == 0 and isinstance(read, BaseException):
                raise read
            n = run_unit(im, unit, pdir, settings, read=read if attempt == 0 else None,
                         write=write if attempt == 0 else write_unit)
        except UNIT_ERRORS as exc:
            err = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            continue
        failed_marker(pdir, unit).unlink(missing_ok=True)
        return n
    atomic_write_text(failed_marker(pdir, unit), json.dumps({"error": err, "tries": int(tries)}))
    return None


def run_units(
    im: InferenceModel, units: Sequence[Unit], pdir: Path, settings: dict[str, Any], *,
    prefetch: bool | str = True, progress_bar: bool = True,
) -> list[int | None]:
    """Run and store ``units`` in order (:func:`run_unit_safely`). With ``prefetch`` (True: the
    platform's default reader; or ``"process"``/``"thread"``), unit k+1 is read and prepared by a
    background reader while the network runs on unit k, and unit k-1's parts file and marker are
    written by a writer thread (:func:`_overlapped`); same results either way. Returns each unit's row
    count (None: failed as a whole)."""
    reader = reader_name(prefetch)
    source = read_units(im, units, settings, reader)
    with contextlib.closing(source):  # leaving early (an error here) stops the reader at once
        reads = progress(source, desc="catalog", total=len(units), unit="unit") if progress_bar else source
        if reader == "inline":
            return [run_unit_safely(im, u, pdir, settings, read=read) for u, read in reads]
        return _overlapped(im, reads, pdir, settings)


def _overlapped(
    im: InferenceModel, reads: Iterable[tuple], pdir: Path, settings: dict[str, Any]
) -> list[int | None]:
    """The computing side of :func:`run_units` with prefetch: each unit runs here
    (:func:`run_unit_safely`) and its first try hands its parts file and marker (a Parquet write and
    an fsync) to a one-thread writer, which writes them while the next unit computes — at most one
    write in flight, written in unit order. A write that failed sends its unit back to
    :func:`run_unit_safely` with that error, which retries it here, as without prefetch."""
    from concurrent.futures import Future, ThreadPoolExecutor

    counts: list[int | None] = []
    in_flight: tuple[int, Unit, Future] | None = None

    def settle() -> None:  # wait for the write in flight
        nonlocal in_flight
        if in_flight is not None:
            pos, unit, future = in_flight
            in_flight = None
            try:
                future.result()
            except UNIT_ERRORS as exc:
                counts[pos] = run_unit_safely(im, unit, pdir, settings, read=exc)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="starlabels-writer") as writer:
        for pos, (unit, read) in enumerate(reads):

            def write_later(pdir: Path, unit: Unit, df: Any, skipped: list, pos: int = pos) -> int:
                nonlocal in_flight
                settle()
                in_flight = (pos, unit, writer.submit(write_unit, pdir, unit, df, skipped))
                return 0 if df is None else len(df)

            counts.append(run_unit_safely(im, unit, pdir, settings, read=read, write=write_later))
        settle()
    return counts


# ----------------------------------------------------------------------------------------------
# single-process driver


def run_catalog(
    model: Any,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    format: str | None = None,
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
    prefetch: bool | str = True,
) -> CatalogResult:
    """Predict every input and write the catalog ``out`` (single process). See the module docstring.

    ``model`` is a TrainedModel or a model folder; ``inputs`` files/directories/HDF5 datasets;
    ``resample`` ``None`` (spectra on another grid are skipped, listed with file and HDU),
    ``"linear"`` or ``"flux-conserving"`` (resampled onto the model's grid, flag RESAMPLED);
    ``prefetch`` reads and prepares the next unit while one is computed (True: in a reading process on
    Linux, else a thread; ``"thread"``/``"process"`` to choose; False: in line; the same catalog).
    Returns a :class:`~starlabels.inference.catalog_parts.CatalogResult`.
    """
    fmt = guess_format(out, format)
    im = resolve(model)
    settings = run_settings(uncertainty=uncertainty, n_samples=n_samples, seed=seed,
                            batch_size=batch_size, device=device, calibrated=calibrated, resample=resample)
    with OutputLock(out):
        units, pending, skipped = prepare_run(im, inputs, out, settings, files_per_unit=files_per_unit,
                                              rows_per_unit=rows_per_unit, overwrite=overwrite)
        run_units(im, pending, parts_dir(out), settings, prefetch=prefetch)
        res = assemble(im.label_names, im.label_units, units, out, fmt, skipped,
                       meta=catalog_meta(im, settings), keep_parts=keep_parts)
    res.units_computed = len(pending)
    return res


def run_settings(**kw: Any) -> dict[str, Any]:
    """The keyword arguments every unit passes to :func:`predict` (plus ``seed``)."""
    return {
        "uncertainty": kw.get("uncertainty"), "n_samples": int(kw.get("n_samples", 100)),
        "seed": int(kw.get("seed", 0)), "batch_size": int(kw.get("batch_size", 256)),
        "device": kw.get("device"), "calibrated": bool(kw.get("calibrated", True)),
        "resample": kw.get("resample"),
    }


def catalog_meta(im: InferenceModel, settings: dict[str, Any]) -> dict[str, Any]:
    """Header keywords of the catalog file: model, version and the run's settings."""
    return {"MODEL": im.name, "MODELVER": im.version, "UNCERT": str(settings["uncertainty"]),
            "NSAMPLES": settings["n_samples"], "CALIB": settings["calibrated"],
            "RESAMPLE": str(settings.get("resample"))}
