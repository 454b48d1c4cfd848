"""Listing a survey folder: what planning a catalog run over a folder of spectrum files costs.

    python bench/list_folder.py [--files 4096] [--rounds 7]

A catalog run over a folder plans its units from the folder's listing
(:func:`starlabels.io.read.list_files`, called by ``catalog_inputs.expand_inputs``) before the first unit
is read, so the listing is paid once per run, before the network starts. Side by side in one
process, rounds interleaved, the same folder (``--files`` one-byte files named as apStar files, page
cache and dentry cache warm):

* ``former``: the listing as it was written before the ``os.scandir`` walk (``sorted(Path.rglob)``,
  ``Path.resolve`` of every file to drop duplicates; reproduced below as :func:`former_list_files`);
* ``now``: :func:`starlabels.io.read.list_files`.

Both give the same list (checked). Printed: best and median ms over ``--rounds``, µs per file and
the ratio of the medians. One thread, no torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from starlabels.io.read import list_files


def former_list_files(paths: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """The former :func:`list_files`: sorted ``Path.rglob`` (``iterdir`` when not ``recursive``) of each
    folder, files as given, ``Path.resolve`` of each to drop duplicates (tests/io/test_read.py checks
    the faster walk against it)."""
    out, seen = [], set()
    for item in paths:
        p = Path(item)
        found = [f for f in sorted(p.rglob("*") if recursive else p.iterdir()) if not f.is_dir()] \
            if p.is_dir() else [p]
        for f in found:
            key = f.resolve() if f.exists() else f
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4096, help="files in the folder (default 4096)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="starlabels_list_folder_"))
    try:
        folder = tmp / "apstar"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"apStar-dr17-2M{i:08d}.fits").write_bytes(b"x")
        rows = {"former": lambda: former_list_files([folder]), "now": lambda: list_files(folder)}
        assert rows["former"]() == rows["now"](), "the two listings differ"
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, f in rows.items():
                t = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"### Listing a folder of {args.files} files (bench/list_folder.py)\n")
    print(f"One thread, {args.rounds} interleaved rounds, caches warm; {os.cpu_count()} CPUs.\n")
    print("| listing | best ms | median ms | µs per file |\n|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {min(ts) * 1e3:.1f} | {med * 1e3:.1f} | {med / args.files * 1e6:.1f} |")
    ratio = statistics.median(times["former"]) / statistics.median(times["now"])
    print(f"\nformer / now: {ratio:.2f}x")


if __name__ == "__main__":
    main()
