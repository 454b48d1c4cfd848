"""Ingest apStar files (and an optional label catalogue) into one starlabels HDF5 dataset.

:func:`ingest_files` streams the files in batches into a :class:`~starlabels.data.hdf5.DatasetWriter`:

* inputs are files or directories (searched recursively for ``apStar*.fits[.gz]`` and the LCO
  ``asStar*.fits[.gz]``), sorted by path, duplicates removed;
* each file is read with :func:`starlabels.io.read_apstar` — its combined spectrum, or every
  visit with ``visits=True`` (meta column ``visit`` = 0, 1, …) — onto the 8575-pixel apStar grid,
  as read (``preprocessing = null``);
* labels come from an allStar-like catalogue (FITS table, CSV or Parquet, read with
  :func:`starlabels.io.read_allstar`) matched by APOGEE_ID; a star missing from it gets MISSING
  labels. When the catalogue lists a star more than once, the row with the most labels present
  is used (the first such row on a tie);
* the run is resumable: files whose path is already in the dataset's ``meta/source`` are skipped,
  and a batch interrupted before it was committed is simply read again;
* a file that cannot be read (truncated, not FITS, not apStar layout, no valid pixels, …) is
  skipped with its reason and never stops the run; the skipped files are listed in
  ``<OUT stem>.skipped.csv`` (columns ``file``, ``reason``) beside the output.
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
from starlabels.data.hdf5 import DatasetWriter
from starlabels.errors import InputFileError
from starlabels.io import DEFAULT_LABELS, read_allstar, read_apstar
from starlabels.preprocess.grids import APSTAR_N_PIXELS
from starlabels.utils import give_default_permissions, progress

PATTERNS = ("apStar*.fits", "apStar*.fits.gz", "asStar*.fits", "asStar*.fits.gz")
SPECTRUM_KEYS = frozenset({"flux", "error", "bitmask", "labels", "label_errors"})


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


def find_apstar_files(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to ingest from files/directories: ``(sorted unique paths, [(input, problem)])``.

    Directories are searched recursively for :data:`PATTERNS`; named files are taken as they are
    (whatever their name); inputs that do not exist are returned as problems.
    """
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for pattern in PATTERNS:
                for f in p.rglob(pattern):
                    if f.is_file():
                        found.setdefault(str(f.resolve()), f.resolve())
        elif p.is_file():
            found.setdefault(str(p.resolve()), p.resolve())
        else:
            missing.append((str(p), "no such file or directory"))
    return [found[k] for k in sorted(found)], missing


class LabelCatalog:
    """Labels by APOGEE_ID from an allStar-like catalogue (see :func:`starlabels.io.read_allstar`)."""

    def __init__(self, path: str | os.PathLike[str], label_names: Sequence[str] = DEFAULT_LABELS):
        table = read_allstar(path, labels=list(label_names))
        self.path = Path(path)
        self.label_names = table.label_names
        ids = np.asarray(table.apogee_id).astype(str)
        present = (table.labels != MISSING).sum(axis=1)
        order = np.lexsort((np.arange(len(ids)), -present))  # most labels first, then file order
        uniq, first = np.unique(ids[order], return_index=True)
        rows = order[first]
        self.n_duplicates = len(ids) - len(uniq)
        self._index = dict(zip(uniq.tolist(), rows.tolist(), strict=True))
        self._labels = table.labels
        self._errors = table.label_errors

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, apogee_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(L,) labels and errors of a star, or None when the catalogue lacks it."""
        row = self._index.get(str(apogee_id).strip())
        if row is None:
            return None
        return self._labels[row], self._errors[row]


def _read_one(path: Path, visits: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(n, 8575) flux, error, bitmask and the file meta; raises for anything unusable."""
    spec = read_apstar(path, row="visits" if visits else "combined")
    flux = np.atleast_2d(spec.flux)
    error = np.atleast_2d(spec.error)
    bitmask = np.atleast_2d(spec.bitmask)
    if flux.shape[-1] != APSTAR_N_PIXELS:
        raise InputFileError(path, f"spectrum has {flux.shape[-1]} pixels, expected {APSTAR_N_PIXELS}")
    usable = np.isfinite(flux) & np.isfinite(error) & (error > 0) & (flux != 0)
    if not usable.any(axis=1).all():
        raise InputFileError(path, "spectrum has no valid pixels (all flux zero or non-finite)")
    return flux, error, bitmask, spec.meta


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


def ingest_files(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    label_names: Sequence[str] | None = None,
    visits: bool = False,
    group: str | None = None,
    batch_size: int = 64,
) -> IngestResult:
    """Ingest apStar files/directories into the HDF5 dataset ``output`` (created or resumed).

    Args:
        inputs: apStar files and/or directories (searched recursively).
        output: dataset file; an existing one with the same grid and label names is resumed.
        labels: optional allStar-like catalogue (FITS/CSV/Parquet) matched by APOGEE_ID.
        label_names: label columns (default TEFF, LOGG, FE_H with a catalogue, none without).
        visits: one row per visit spectrum instead of the combined spectrum.
        group: optional value for every added row's ``meta/group`` (e.g. ``"payne"``).
        batch_size: rows buffered per append (each append is one committed step).

    Returns:
        :class:`IngestResult`. Raises :class:`InputFileError` only for an unusable catalogue or
        an output that exists but is not a compatible dataset (nothing is written then).
    """
    output = Path(output)
    if label_names is None:
        label_names = DEFAULT_LABELS if labels is not None else ()
    label_names = tuple(str(n).strip().upper() for n in label_names if str(n).strip())
    catalog = LabelCatalog(labels, label_names) if labels is not None else None
    files, problems = find_apstar_files(inputs)
    result = IngestResult(output=output, skipped=list(problems), skipped_csv=skipped_csv_path(output))
    L = len(label_names)

    with DatasetWriter(output, APSTAR_N_PIXELS, "apstar", label_names) as writer:
        done = set(writer.read_meta("source").tolist()) if "source" in writer.meta_names else set()
        todo = [f for f in files if str(f) not in done]
        result.files_present = len(files) - len(todo)
        buf: dict[str, list[Any]] = {}
        n_buf = 0
        buf_files = 0

        def flush() -> None:
            nonlocal buf, n_buf, buf_files
            if n_buf:
                meta = {k: np.concatenate(v) for k, v in buf.items() if k not in SPECTRUM_KEYS}
                writer.append(
                    np.concatenate(buf["flux"]), np.concatenate(buf["error"]), np.concatenate(buf["bitmask"]),
                    labels=np.concatenate(buf["labels"]) if L else None,
                    label_errors=np.concatenate(buf["label_errors"]) if L else None,
                    meta=meta,
                )
                result.rows_added += n_buf
                result.files_added += buf_files
            buf, n_buf, buf_files = {}, 0, 0

        for path in progress(todo, desc="ingest", unit="file"):
            try:
                flux, error, bitmask, meta = _read_one(path, visits)
            except Exception as exc:  # one bad file never stops the run
                reason = exc.problem if isinstance(exc, InputFileError) else f"{type(exc).__name__}: {exc}"
                result.skipped.append((str(path), reason))
                continue
            n = flux.shape[0]
            lab = np.full((n, L), MISSING)
            lab_err = np.full((n, L), MISSING)
            if catalog is not None:
                hit = catalog.lookup(meta["APOGEE_ID"])
                if hit is None:
                    result.rows_unlabelled += n
                else:
                    lab[:], lab_err[:] = hit
            elif L:
                result.rows_unlabelled += n
            row = {
                "flux": flux, "error": error, "bitmask": bitmask, "labels": lab, "label_errors": lab_err,
                "apogee_id": np.full(n, str(meta["APOGEE_ID"]), dtype=object),
                "source": np.full(n, str(path), dtype=object),
                "ra": np.full(n, meta["RA"], float), "dec": np.full(n, meta["DEC"], float),
                "snr": np.full(n, meta["SNR"], float), "vhelio": np.full(n, meta["VHELIO"], float),
                "nvisits": np.full(n, meta["NVISITS"], np.int32),
            }
            if visits:
                row["visit"] = np.arange(n, dtype=np.int32)
            if group is not None:
                row["group"] = np.full(n, str(group), dtype=object)
            for k, v in row.items():
                buf.setdefault(k, []).append(v)
            n_buf += n
            buf_files += 1
            if n_buf >= batch_size:
                flush()
        flush()
        result.rows_total = writer.n_rows
    _write_skipped(result.skipped_csv, result.skipped)
    return result

