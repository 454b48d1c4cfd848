"""The parts folder of a catalog run: unit parts, done-markers, the manifest, and assembly into the catalog.

Each finished unit is written to ``<OUT>.parts/unit-<index>-<key>.parquet`` (atomically: a temporary
file renamed into place), then a ``.json`` marker with its row count and skipped inputs; a unit whose
marker exists is done, so an interrupted run started again with the same arguments computes only
the rest. ``<OUT>.parts/manifest.json`` records the model and settings (:func:`prepare_run` refuses
to resume with others). A unit that failed as a whole after its retries has a ``.failed.json``
record instead. :func:`assemble` joins the parts in unit order into the catalog file
(:mod:`starlabels.inference.catalog_tables`) and writes ``<OUT>.skipped.tsv``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import StarlabelsError
from starlabels.inference import flags as flag_bits
from starlabels.inference.catalog_columns import catalog_columns
from starlabels.inference.catalog_inputs import FILES_PER_UNIT, ROWS_PER_UNIT, Unit, expand_inputs, plan_units
from starlabels.inference.catalog_tables import write_table
from starlabels.inference.inference_model import InferenceModel
from starlabels.io.atomic_file import atomic_write

__all__ = [
    "SUMMARY_FLAGS",
    "CatalogResult",
    "assemble",
    "atomic_write_text",
    "failed_marker",
    "flag_counts",
    "parts_dir",
    "prepare_run",
    "skipped_path",
    "write_unit",
]

@dataclass
class CatalogResult:
    """Outcome of a catalog run: output path, rows written, skipped inputs, units computed now."""

    path: Path
    n_rows: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_path: Path | None = None
    units_total: int = 0
    units_computed: int = 0
    #: rows per flag name (``{"INVALID_SPECTRUM": 5, "MANY_MASKED_PIXELS": 10, ...}``; a row counts
    #: once under each of its bits), and rows with any flag in :data:`SUMMARY_FLAGS`
    flag_counts: dict[str, int] = field(default_factory=dict)
    #: units that failed as a whole after :data:`UNIT_TRIES` tries (``(unit name, error)``); their
    #: inputs are listed in ``skipped``; the parts folder is kept so a resume retries them
    failed_units: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_flagged(self) -> int:
        """Rows that are not usable as they are: INVALID_SPECTRUM or MANY_MASKED_PIXELS or
        NONFINITE_OUTPUT (see :attr:`flag_counts` for every bit)."""
        return int(self.flag_counts.get("_PROBLEM_ROWS", 0))

    def written(self) -> str:
        """The line the CLI prints when the catalog is written: rows, units computed now, skips."""
        return (f"wrote {self.n_rows} rows to {self.path} ({self.units_computed} of {self.units_total} units "
                f"computed now); {len(self.skipped)} input(s) skipped"
                + (f", listed in {self.skipped_path}" if self.skipped else ""))

    def summary(self) -> str:
        """One line per problem kind, for logs and the CLI."""
        kinds = [f"{n} {k}" for k, n in self.flag_counts.items() if not k.startswith("_") and n]
        lines = [f"{self.n_rows} rows, {self.n_flagged} with a problem flag"
                 + (f" ({', '.join(kinds)})" if kinds else "")]
        if self.skipped:
            lines.append(f"{len(self.skipped)} input(s) skipped (unreadable or unsuitable)")
        if self.failed_units:
            lines.append(f"{len(self.failed_units)} unit(s) failed as a whole: "
                         + "; ".join(f"{n}: {e}" for n, e in self.failed_units[:3]))
        return "\n".join(lines)


#: Flags that make a row a "problem" row in the run summary (n_flagged).
SUMMARY_FLAGS: tuple[str, ...] = ("INVALID_SPECTRUM", "MANY_MASKED_PIXELS", "NONFINITE_OUTPUT")


def parts_dir(out: str | os.PathLike) -> Path:
    """The parts folder of the catalog ``out``: ``<out>.parts``."""
    return Path(str(out) + ".parts")


def skipped_path(out: str | os.PathLike) -> Path:
    """The skipped-inputs list of the catalog ``out``: ``<out>.skipped.tsv``."""
    return Path(str(out) + ".skipped.tsv")


def prepare_run(
    im: InferenceModel,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    settings: dict[str, Any],
    *,
    files_per_unit: int = FILES_PER_UNIT,
    rows_per_unit: int = ROWS_PER_UNIT,
    overwrite: bool = False,
) -> tuple[list[Unit], list[Unit], list[tuple[str, str]]]:
    """Expand inputs, plan units and set up ``<out>.parts``. Returns (all units, pending units,
    skipped-at-planning). Raises :class:`StarlabelsError` when an existing parts folder was made
    with other settings (unless ``overwrite``)."""
    items, skipped = expand_inputs(inputs)
    units, sk2 = plan_units(items, files_per_unit=files_per_unit, rows_per_unit=rows_per_unit)
    skipped += sk2
    pdir = parts_dir(out)
    manifest = {
        "model_name": im.name, "model_version": im.version, "settings": _jsonable(settings),
        "files_per_unit": files_per_unit, "rows_per_unit": rows_per_unit,
        "label_names": im.label_names,
    }
    mpath = pdir / "manifest.json"
    if pdir.exists() and overwrite:
        shutil.rmtree(pdir)
    if mpath.exists():
        old = json.loads(mpath.read_text())
        differing = _differing(old, manifest)
        if differing:
            raise StarlabelsError(
                f"{pdir} holds parts of a run with other settings or another model "
                f"(differs in {', '.join(differing)}); remove it or pass overwrite=True (--overwrite)"
                + _resume_hint(old, differing)
            )
    else:
        pdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(mpath, json.dumps(manifest, indent=1))
    pending = [u for u in units if not (pdir / f"{u.name}.json").exists()]
    return units, pending, skipped


def _differing(old: dict, new: dict) -> list[str]:
    """The keys, sorted, whose values differ between a stored manifest ``old`` and ``new`` (compared
    as JSON gives them back)."""
    new = json.loads(json.dumps(new))
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _resume_hint(old: dict, differing: Sequence[str]) -> str:
    """How to resume instead, when the units' sizes are all that differ (e.g. a run begun before
    ``FILES_PER_UNIT`` changed from 64 to 256)."""
    sizes = ("files_per_unit", "rows_per_unit")
    keys = set(differing)
    if not keys or not keys <= set(sizes) or not all(isinstance(old.get(k), int) for k in keys):
        return ""
    given = " ".join(f"--{k.replace('_', '-')} {old[k]}" for k in sizes if k in keys)
    keywords = ", ".join(f"{k}={old[k]}" for k in sizes if k in keys)
    return f"; to resume it, pass {keywords} ({given})"


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed into place."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), overwrite=True)


def write_unit(pdir: Path, unit: Unit, df: Any, skipped: list[tuple[str, str]]) -> int:
    """Store a finished unit: its rows (Parquet) then its done-marker (JSON). Returns rows."""
    n = 0 if df is None else len(df)
    if n:
        tmp = pdir / f".{unit.name}.{os.getpid()}.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, pdir / f"{unit.name}.parquet")
    marker = {"rows": n, "skipped": [list(s) for s in skipped],
              "items": [i.record() for i in unit.items]}
    atomic_write_text(pdir / f"{unit.name}.json", json.dumps(marker))
    return n


def failed_marker(pdir: Path, unit: Unit) -> Path:
    """The record of ``unit`` failing as a whole after its retries, in the parts folder ``pdir``."""
    return pdir / f"{unit.name}.failed.json"


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """Rows per flag bit name, plus ``"_PROBLEM_ROWS"``: rows with any :data:`SUMMARY_FLAGS` bit."""
    flags = np.asarray(flags, np.int64)
    counts = {n: int(((flags >> b) & 1).sum()) for n, b in flag_bits.FLAG_BITS.items()}
    problem = sum(flag_bits.bit(n) for n in SUMMARY_FLAGS)
    counts["_PROBLEM_ROWS"] = int(((flags & problem) != 0).sum())
    return counts


def assemble(
    im_label_names: Sequence[str],
    label_units: Sequence[str],
    units: Sequence[Unit],
    out: str | os.PathLike,
    fmt: str,
    skipped: list[tuple[str, str]],
    *,
    meta: dict[str, Any] | None = None,
    keep_parts: bool = False,
) -> CatalogResult:
    """Join the unit parts (in unit order) into ``out`` and write the skipped-inputs file."""
    import pandas as pd

    pdir = parts_dir(out)
    frames = []
    skipped = list(skipped)
    failed: list[tuple[str, str]] = []
    for u in units:
        marker = pdir / f"{u.name}.json"
        if not marker.exists() and failed_marker(pdir, u).exists():
            err = json.loads(failed_marker(pdir, u).read_text())["error"]
            failed.append((u.name, err))
            skipped += [(i.path if i.kind != "hdf5" else f"{i.path}[{i.start}:{i.stop}]",
                         f"unit {u.name} failed after retries: {err}") for i in u.items]
            continue
        if not marker.exists():
            raise StarlabelsError(f"unit {u.name} is not finished; cannot assemble {out}")
        info = json.loads(marker.read_text())
        skipped += [tuple(s) for s in info["skipped"]]
        if info["rows"]:
            frames.append(pd.read_parquet(pdir / f"{u.name}.parquet"))
    if frames:
        df = pd.concat(frames, ignore_index=True)
    else:
        df = pd.DataFrame({c: [] for c in catalog_columns(im_label_names, ())})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(df, out, fmt, im_label_names, label_units, meta=meta)
    sp = skipped_path(out)
    atomic_write_text(sp, "path\treason\n" + "".join(
        f"{p}\t{' '.join(str(r).split())}\n" for p, r in skipped
    ))
    if not keep_parts and not failed:  # failed units keep the parts: a resume retries only them
        shutil.rmtree(pdir, ignore_errors=True)
    return CatalogResult(path=out, n_rows=len(df), skipped=skipped, skipped_path=sp,
                         units_total=len(units), failed_units=failed,
                         flag_counts=flag_counts(df["FLAG"].to_numpy() if len(df) else np.zeros(0)))
