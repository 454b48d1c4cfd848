"""Ingest spectrum files (and an optional label table) into one starlabels HDF5 dataset.

:func:`ingest_files` streams the files in batches into a :class:`~starlabels.data.hdf5_writer.DatasetWriter`:

* inputs are files or folders; folders are scanned *by content* (:func:`starlabels.io.scan_inputs`),
  so any file :func:`starlabels.io.read_spectra` reads is used whatever its name (apStar DR14–17 and
  SDSS-V, mwmStar/mwmVisit DR19/DR20, apVisit, BOSS spec, tables), and every other file is listed
  as skipped with the reason; files are sorted by path, duplicates removed;
* the dataset holds the spectra of one ``instrument`` (default ``"apogee"``) on one ``grid``
  (default the instrument's native grid; stored in the file): each spectrum of that instrument in a
  file is a row — the combined spectrum, or every visit with ``visits=True`` (meta column ``visit``
  = 0, 1, …) —, as read (``preprocessing = null``). A spectrum on another grid is cut to the
  dataset's pixels when its grid holds them, resampled with ``resample="linear"|"flux-conserving"``
  (:func:`starlabels.preprocess.resample.resample`), and otherwise skipped, listed as ``FILE[HDU]``
  with both grids named; spectra of other instruments in the same file (the BOSS HDUs of an
  mwmStar file in an APOGEE dataset) and continuum-normalised aspcapStar spectra are listed too;
* labels come from a label table read with :func:`starlabels.io.read_label_table`: an allStar-like
  catalogue (FITS, CSV or Parquet) joined on APOGEE_ID, or an SDSS-V ``astraAllStar<Pipeline>``
  table joined on ``sdss_id`` (its quality cuts: rows with ``flag_bad`` dropped, per-label flags
  masked, the best-SNR row per star; the pipeline's ``result_flags`` are stored as meta column
  ``label_flags``). A star missing from the table gets MISSING labels. When a table lists a star
  more than once, the row with the most labels present is used (the first such row on a tie);
* meta columns: ``apogee_id``, ``sdss_id`` (-1 when absent), ``telescope``, ``hdu``, ``source``,
  ``ra``, ``dec``, ``snr``, ``vhelio``, ``nvisits`` (and ``visit``, ``group``, ``label_flags``);
* the run is resumable: files whose path is already in the dataset's ``meta/source`` are skipped,
  and a batch interrupted before it was committed is simply read again;
* a file that cannot be read (truncated, not a spectrum, no valid pixels, …) is skipped with its
  reason and never stops the run; the skipped files are listed in ``<OUT stem>.skipped.csv``
  (columns ``file``, ``reason``) beside the output.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.core import Grid
from starlabels.core import get as get_instrument
from starlabels.core.grid import from_wavelength
from starlabels.data.hdf5_format import as_grid
from starlabels.data.hdf5_writer import DatasetWriter
from starlabels.errors import InputDataError, InputFileError
from starlabels.io import DEFAULT_LABELS, read_label_table
from starlabels.io.read import read_spectra, scan_inputs
from starlabels.utils import give_default_permissions, progress

SPECTRUM_KEYS = frozenset({"flux", "error", "bitmask", "labels", "label_errors"})
RESAMPLE_METHODS = ("linear", "flux-conserving")


@dataclass
class IngestResult:
    """What an ingest run did.

    Attributes:
        output: the dataset file.
        files_added: files ingested by this run; rows_added: rows they gave.
        files_present: files skipped because an earlier run had already ingested them.
        skipped: ``(file, reason)`` for each file that could not be ingested.
        rows_total: rows in the dataset after the run.
        rows_unlabelled: rows added whose star is not in the label catalogue.
        skipped_csv: the file listing ``skipped``.
    """

    output: Path
    files_added: int = 0
    rows_added: int = 0
    files_present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rows_total: int = 0
    rows_unlabelled: int = 0
    skipped_csv: Path | None = None

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.output}: {self.rows_total} rows; this run added {self.rows_added} rows from "
            f"{self.files_added} files ({self.files_present} already present, "
            f"{len(self.skipped)} skipped, {self.rows_unlabelled} rows without catalogue labels)"
        ]
        if self.skipped:
            lines.append(f"skipped files (all listed in {self.skipped_csv}):")
            lines += [f"  {f}: {r}" for f, r in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  … and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def find_spectrum_files(
    inputs: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Spectrum files from files/folders, by content: ``(sorted unique paths, [(path, problem)])``.

    Folders are walked recursively; a file that is not a spectrum file (or does not exist) is
    returned as a problem with the reason, never silently ignored.
    """
    found: dict[str, Path] = {}
    problems: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            problems.append((str(p), "no such file or directory"))
            continue
        readable, skipped = scan_inputs([p])
        for f in readable:
            found.setdefault(str(f.resolve()), f.resolve())
        problems += [(str(Path(f).resolve()), reason) for f, reason in skipped]
    return [found[k] for k in sorted(found)], sorted(set(problems))


class LabelCatalog:
    """Labels by identifier from an allStar-like catalogue (by APOGEE_ID) or an SDSS-V astraAllStar
    table (by SDSS_ID), read with :func:`starlabels.io.read_label_table`."""

    def __init__(self, path: str | os.PathLike[str], label_names: Sequence[str] = DEFAULT_LABELS):
        table = read_label_table(path, labels=list(label_names))
        self.path = Path(path)
        self.label_names = table.label_names
        #: the spectrum meta key joining the table to spectra: "APOGEE_ID" or "SDSS_ID"
        self.key_column = str(table.key_column)
        ids = np.char.strip(np.asarray(table.key).astype(str))
        present = (table.labels != MISSING).sum(axis=1)
        order = np.lexsort((np.arange(len(ids)), -present))  # most labels first, then file order
        uniq, first = np.unique(ids[order], return_index=True)
        rows = order[first]
        self.n_duplicates = len(ids) - len(uniq)
        self._index = dict(zip(uniq.tolist(), rows.tolist(), strict=True))
        self._labels = table.labels
        self._errors = table.label_errors
        self._flags = np.asarray(table.aspcapflag, np.int64)

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, key: Any) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(L,) labels, errors and the pipeline's result flags of a star, or None when absent."""
        if key is None:
            return None
        row = self._index.get(str(key).strip())
        if row is None:
            return None
        return self._labels[row], self._errors[row], int(self._flags[row])


def _onto_grid(s: Any, grid: Grid, resample: str | None, where: str) -> tuple[np.ndarray, ...]:
    """(flux, error, bitmask) of Spectrum ``s`` on the dataset's ``grid``: as is, the grid's pixels
    cut from a wider grid, or resampled; InputDataError naming both grids otherwise."""
    src = from_wavelength(s.wavelength, name=f"{s.instrument} spectrum")
    if src.n_pixels == grid.n_pixels and src.positions_in(grid) is not None:
        return s.flux, s.error, s.bitmask
    pos = grid.positions_in(src)
    if pos is not None:
        return s.flux[pos], s.error[pos], s.bitmask[pos]
    if resample is None:
        raise InputDataError(f"{where}: spectrum on grid {src.describe()}, not the dataset's "
                             f"{grid.describe()}; pass resample='linear' or 'flux-conserving' to resample it")
    from starlabels.preprocess.resample import resample as resample_arrays

    try:
        bitmask_def = get_instrument(s.instrument).bitmask()
    except ValueError:
        bitmask_def = None
    return resample_arrays(s.flux, s.error, s.bitmask, source=src, target=grid, method=resample,
                           bitmask_def=bitmask_def)


def _read_one(
    path: Path, visits: bool, instrument: str, grid: Grid, resample: str | None
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]], list[tuple[str, str]]]:
    """The usable spectra of ``instrument`` in a file on ``grid`` as (flux, error, bitmask, meta), and
    (``FILE[HDU]``, reason) for the others; raises for a file that gives nothing usable."""
    # tables that do not name their instrument are taken to hold the dataset's
    spectra = read_spectra(path, rows="visits" if visits else "combined", instrument=instrument)
    rows, skipped = [], []
    for s in spectra:
        where = f"{path}[{s.meta.get('HDU', '')}]"
        if s.instrument != instrument:
            skipped.append((where, f"{s.instrument} spectrum; this dataset holds {instrument} spectra"))
            continue
        if s.meta.get("NORMALISED"):
            skipped.append((where, "continuum-normalised spectrum (aspcapStar); datasets hold spectra "
                                   "as read"))
            continue
        try:
            flux, error, bitmask = _onto_grid(s, grid, resample, f"{path} HDU {s.meta.get('HDU')}")
        except InputDataError as exc:
            skipped.append((where, str(exc)))
            continue
        usable = np.isfinite(flux) & np.isfinite(error) & (error > 0) & (flux != 0)
        if not usable.any():
            skipped.append((where, "spectrum has no valid pixels (all flux zero or non-finite)"))
            continue
        rows.append((flux, error, bitmask, s.meta))
    if not rows:
        reasons = "; ".join(sorted({r for _, r in skipped})) or "no spectra"
        raise InputFileError(path, reasons)
    return rows, skipped


def _write_skipped(path: Path, skipped: Sequence[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "reason"])
            w.writerows(skipped)
        give_default_permissions(tmp)  # mkstemp makes it owner-only (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def skipped_csv_path(output: str | os.PathLike[str]) -> Path:
    """``OUT.h5`` → ``OUT.skipped.csv``."""
    out = Path(output)
    return out.with_name(out.stem + ".skipped.csv")


def _number(meta: dict[str, Any], key: str, default: float = np.nan) -> float:
    try:
        return float(meta.get(key, default))
    except (TypeError, ValueError):
        return default


def ingest_files(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    label_names: Sequence[str] | None = None,
    visits: bool = False,
    group: str | None = None,
    batch_size: int = 64,
    instrument: str = "apogee",
    grid: Grid | str | None = None,
    resample: str | None = None,
) -> IngestResult:
    """Ingest spectrum files/folders into the HDF5 dataset ``output`` (created or resumed).

    Args:
        inputs: spectrum files and/or folders (searched recursively, by content).
        output: dataset file; an existing one with the same grid and label names is resumed.
        labels: optional label table: allStar-like (FITS/CSV/Parquet, joined on APOGEE_ID) or an
            SDSS-V astraAllStar<Pipeline> table (joined on SDSS_ID).
        label_names: label columns (default TEFF, LOGG, FE_H with a catalogue, none without).
        visits: one row per visit spectrum instead of the combined spectrum.
        group: optional value for every added row's ``meta/group`` (e.g. ``"payne"``).
        batch_size: rows buffered per append (each append is one committed step).
        instrument: whose spectra the dataset holds (``"apogee"``, ``"boss"``, a registered one).
        grid: the dataset's grid (a Grid or a built-in grid's name; default the instrument's).
        resample: ``None`` (spectra on another grid are skipped), ``"linear"`` or
            ``"flux-conserving"`` (resampled onto the dataset's grid).

    Returns:
        :class:`IngestResult`. Raises :class:`InputFileError` only for an unusable catalogue or
        an output that exists but is not a compatible dataset (nothing is written then).
    """
    output = Path(output)
    if resample not in (None, *RESAMPLE_METHODS):
        raise InputDataError(f"resample must be None or one of {RESAMPLE_METHODS}, got {resample!r}")
    inst = get_instrument(instrument)
    target = inst.grid if grid is None else as_grid(grid)
    if label_names is None:
        label_names = DEFAULT_LABELS if labels is not None else ()
    label_names = tuple(str(n).strip().upper() for n in label_names if str(n).strip())
    catalog = LabelCatalog(labels, label_names) if labels is not None else None
    files, problems = find_spectrum_files(inputs)
    result = IngestResult(output=output, skipped=list(problems), skipped_csv=skipped_csv_path(output))
    L = len(label_names)

    from starlabels.output_lock import OutputLock

    lock = OutputLock(output, "ingest")
    with lock, _CrashSafeWriter(output, target, label_names, inst.name) as safe:
        # ``safe.writer`` is replaced at every commit: always go through ``safe``, never keep the writer
        done = set(safe.writer.read_meta("source").tolist()) if "source" in safe.writer.meta_names else set()
        todo = [f for f in files if str(f) not in done]
        result.files_present = len(files) - len(todo)
        buf: dict[str, list[Any]] = {}
        n_buf = 0
        buf_files = 0

        def flush() -> None:
            nonlocal buf, n_buf, buf_files
            if n_buf:
                meta = {k: np.concatenate(v) for k, v in buf.items() if k not in SPECTRUM_KEYS}
                safe.writer.append(
                    np.stack(buf["flux"]), np.stack(buf["error"]), np.stack(buf["bitmask"]),
                    labels=np.stack(buf["labels"]) if L else None,
                    label_errors=np.stack(buf["label_errors"]) if L else None,
                    meta=meta,
                )
                result.rows_added += n_buf
                result.files_added += buf_files
            buf, n_buf, buf_files = {}, 0, 0
            safe.maybe_commit()

        for path in progress(todo, desc="ingest", unit="file"):
            try:
                rows, partial = _read_one(path, visits, inst.name, target, resample)
            except Exception as exc:  # one bad file never stops the run
                reason = exc.problem if isinstance(exc, InputFileError) else f"{type(exc).__name__}: {exc}"
                result.skipped.append((str(path), reason))
                continue
            result.skipped += partial
            for k, (flux, error, bitmask, meta) in enumerate(rows):
                lab = np.full(L, MISSING)
                lab_err = np.full(L, MISSING)
                flags = -1
                if catalog is not None:
                    hit = catalog.lookup(meta.get(catalog.key_column))
                    if hit is None:
                        result.rows_unlabelled += 1
                    else:
                        lab, lab_err, flags = hit
                elif L:
                    result.rows_unlabelled += 1
                row = {
                    "flux": flux, "error": error, "bitmask": bitmask, "labels": lab, "label_errors": lab_err,
                    "apogee_id": _text(meta.get("APOGEE_ID")), "sdss_id": _int(_sdss_id(meta.get("SDSS_ID"))),
                    "telescope": _text(meta.get("TELESCOPE")), "hdu": _text(meta.get("HDU")),
                    "source": _text(path),
                    "ra": np.array([_number(meta, "RA")]), "dec": np.array([_number(meta, "DEC")]),
                    "snr": np.array([_number(meta, "SNR")]), "vhelio": np.array([_number(meta, "VHELIO")]),
                    "nvisits": _int(int(_number(meta, "NVISITS", -1)), np.int32),
                }
                if visits:
                    row["visit"] = _int(k, np.int32)
                if group is not None:
                    row["group"] = _text(group)
                if catalog is not None:
                    row["label_flags"] = _int(flags)
                for key, v in row.items():
                    buf.setdefault(key, []).append(v)
                n_buf += 1
            buf_files += 1
            if n_buf >= batch_size:
                flush()
        flush()
        result.rows_total = safe.writer.n_rows
    _write_skipped(result.skipped_csv, result.skipped)
    return result


#: Seconds between commits of a running ingest into its output (each commit copies the dataset);
#: the environment variable ``STARLABELS_INGEST_COMMIT_SECONDS`` overrides it.
COMMIT_SECONDS: float = 120.0


class _CrashSafeWriter:
    """HDF5 is not crash-safe: a process killed inside an append can leave a file that no longer
    opens. So ingest appends to a work copy ``.<OUT>.ingest-work`` and publishes it into ``OUT``
    atomically (copy, fsync, rename) every :data:`COMMIT_SECONDS` and at the end. ``OUT`` is always
    a complete dataset of some prefix of the files; a killed run loses at most the files since the
    last commit, and running the same command again resumes from ``OUT`` (files in it are skipped).
    ``writer`` is the open :class:`DatasetWriter` on the work copy (it changes at each commit)."""

    def __init__(self, output: str | os.PathLike[str], target: Any, label_names: Any, instrument: str):
        self.output = Path(output)
        self.work = self.output.with_name(f".{self.output.name}.ingest-work")
        self._args = (target, label_names, instrument)
        self._last = 0.0
        self.writer: Any = None

    def _open(self) -> None:
        target, label_names, instrument = self._args
        self.writer = DatasetWriter(self.work, None, target, label_names, instrument=instrument)

    def __enter__(self) -> _CrashSafeWriter:
        import shutil
        import time

        self.work.unlink(missing_ok=True)  # the leftover of a killed run: OUT is the truth
        if self.output.exists():
            shutil.copyfile(self.output, self.work)
        try:
            self._open()
        except BaseException:
            self.work.unlink(missing_ok=True)
            raise
        self._last = time.monotonic()
        return self

    def maybe_commit(self) -> None:
        import time

        every = float(os.environ.get("STARLABELS_INGEST_COMMIT_SECONDS", COMMIT_SECONDS))
        if time.monotonic() - self._last >= every:
            self.writer.close()
            self._publish(copy=True)
            self._open()
            self._last = time.monotonic()

    def _publish(self, copy: bool) -> None:
        import shutil

        src = self.work
        if copy:
            src = self.output.with_name(f".{self.output.name}.ingest-commit")
            shutil.copyfile(self.work, src)
        with open(src, "rb+") as fh:
            os.fsync(fh.fileno())
        give_default_permissions(src)
        os.replace(src, self.output)

    def __exit__(self, *exc: Any) -> None:
        # also after an error (not a kill): what was appended is a complete, resumable dataset
        self.writer.close()
        self._publish(copy=False)


def _text(v: Any) -> np.ndarray:
    """A one-row str meta column ("" for None)."""
    return np.array(["" if v is None else str(v)], dtype=object)


def _int(v: int, dtype: Any = np.int64) -> np.ndarray:
    return np.array([v], dtype)


def _sdss_id(v: Any) -> int:
    try:
        return int(v) if v is not None and str(v).strip() != "" else -1
    except (TypeError, ValueError):
        return -1
