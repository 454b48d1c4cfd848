"""Per-file cost of reading SDSS-V files: specutils' ``sdss_v`` loaders vs our direct astropy readers
(and of writing an mwmStar file: our byte-level writer vs astropy's table writer).

Issue 13 asks to use specutils (≥ 2.4) for mwmStar/mwmVisit/BOSS spec files where its loaders give
the right arrays, unless its measured per-file cost over ≥ 500 files exceeds 1.5× a direct astropy
read. This script measures both, side by side, and checks the arrays.

Setup (printed with the results): one process, one thread, files in a temporary folder on local disk
(page cache warm: every file is read once before timing), N copies of one template file per format
written by ``starlabels.io.write_mwm_star`` / ``write_mwm_visit`` (DR20 layout) or, for BOSS, a
specFull-like file with the SDSS-V cards specutils' identifier needs. Timing alternates the two
readers file by file (time.perf_counter), so drift affects both alike.

* specutils: ``SpectrumList.read(path, format=...)`` with the format named (no identification).
* ours (direct): ``read_mwm`` / ``read_boss_spec`` (astropy.io.fits + numpy).
* ours (by content): ``read_spectra``, which also identifies the format from the headers.

Run::

    .venv/bin/python bench/readers.py [--files 500] [--out bench/results/readers.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from starlabels.io import Spectrum, read_boss_spec, read_mwm, read_spectra, write_mwm_star, write_mwm_visit

APOGEE_WAVE = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
BOSS_WAVE = 10.0 ** (3.5523 + 1e-4 * np.arange(4648))


def _spectrum(instrument: str, seed: int, **meta) -> Spectrum:
    rng = np.random.default_rng(seed)
    wave = APOGEE_WAVE if instrument == "apogee" else BOSS_WAVE
    err = rng.uniform(0.5, 2.0, wave.size)
    err[:10] = np.inf
    flags = rng.integers(0, 1 << 12, wave.size)
    return Spectrum(instrument, wave, rng.normal(100, 5, wave.size), err, flags, meta)


def _boss_spec(path: Path) -> Path:
    from astropy.io import fits

    rng = np.random.default_rng(3)
    n = 4648
    primary = fits.PrimaryHDU()
    primary.header.update({"TELESCOP": "SDSS 2.5-M", "OBSERVAT": "APO", "VERS2D": "v6_1_3",
                           "RUN2D": "v6_1_3", "COEFF0": 3.5523, "COEFF1": 1e-4, "MJD": 60000,
                           "FIELDID": "112360"})
    cols = [fits.Column("FLUX", "E", array=rng.normal(50, 2, n)),
            fits.Column("LOGLAM", "E", array=3.5523 + 1e-4 * np.arange(n)),
            fits.Column("IVAR", "E", array=rng.uniform(0.1, 2, n)),
            fits.Column("AND_MASK", "J", array=rng.integers(0, 1 << 20, n)),
            fits.Column("OR_MASK", "J", array=rng.integers(0, 1 << 20, n)),
            fits.Column("WDISP", "E", array=np.ones(n)), fits.Column("SKY", "E", array=np.zeros(n)),
            fits.Column("MODEL", "E", array=np.ones(n)), fits.Column("WRESL", "E", array=np.ones(n))]
    spall = fits.BinTableHDU.from_columns([fits.Column("SDSS_ID", "K", array=[7]),
                                           fits.Column("SN_MEDIAN_ALL", "E", array=[30.0])], name="SPALL")
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols, name="COADD"), spall]).writeto(path)
    return path


def _templates(folder: Path) -> dict[str, tuple[Path, str, object]]:
    pair = [_spectrum("apogee", 1, TELESCOPE="apo25m"), _spectrum("boss", 2, TELESCOPE="lco25m")]
    star = write_mwm_star(folder / "mwmStar.fits", pair, {"SDSS_ID": 103020000}, layout="dr20")
    visits = [_spectrum("apogee", 10 + i, MJD=60000 + i) for i in range(3)]
    visit = write_mwm_visit(folder / "mwmVisit.fits", visits, {"SDSS_ID": 103020000}, layout="dr20")
    spec = _boss_spec(folder / "spec.fits")
    return {"mwmStar (APOGEE+BOSS)": (star, "SDSS-V mwm", read_mwm),
            "mwmVisit (3 APOGEE visits)": (visit, "SDSS-V mwm", read_mwm),
            "BOSS specFull coadd": (spec, "SDSS-V spec", read_boss_spec)}


def _compare(ours: list[Spectrum], theirs) -> str:
    """Which arrays specutils returns as ours does (per spectrum, flattening 2-D visit blocks)."""
    from astropy import units

    flux, wave, sigma, mask = [], [], [], []
    for s in theirs:
        f = np.atleast_2d(s.flux.value)
        for row in range(f.shape[0]):
            flux.append(f[row])
            wave.append(s.spectral_axis.to_value(units.AA))
            unc = s.uncertainty.represent_as(type(s.uncertainty)).array
            iv = np.atleast_2d(unc)[row] if unc.ndim == 2 else unc
            with np.errstate(divide="ignore"):
                sigma.append(np.where(iv > 0, 1 / np.sqrt(np.where(iv > 0, iv, 1)), np.inf))
            m = np.atleast_2d(s.mask)
            mask.append(m[row] if m.shape[0] > 1 else m[0])
    if len(flux) != len(ours):
        return f"{len(flux)} spectra vs our {len(ours)}"
    checks = {
        "flux": all(np.array_equal(a, b.flux) for a, b in zip(flux, ours, strict=True)),
        "wavelength": all(np.array_equal(a, b.wavelength) for a, b in zip(wave, ours, strict=True)),
        "σ": all(np.allclose(a, b.error, rtol=1e-6) for a, b in zip(sigma, ours, strict=True)),
        "integer pixel flags": False,  # specutils keeps only mask = flags != 0
    }
    wmax = max(float(np.max(np.abs(a / b.wavelength - 1))) for a, b in zip(wave, ours, strict=True))
    same = [k for k, v in checks.items() if v]
    differ = [k for k, v in checks.items() if not v]
    return (f"same: {', '.join(same) or '–'}; differ: {', '.join(differ) or '–'} "
            f"(max relative wavelength difference {wmax:.1e})")


def _writer_costs(folder: Path, n_files: int) -> tuple[float, float]:
    """ms per mwmStar file (APOGEE + BOSS, DR20): ``write_mwm_star`` vs astropy writing the same
    HDUs (``BinTableHDU.from_columns`` from the same columns and header cards, ``add_checksum``,
    ``writeto``), alternated file by file."""
    import io

    from astropy.io import fits

    pair = [_spectrum("apogee", 1, TELESCOPE="apo25m"), _spectrum("boss", 2, TELESCOPE="lco25m")]
    template = write_mwm_star(folder / "template.fits", pair, {"SDSS_ID": 1}, layout="dr20")
    with fits.open(template) as h:
        parts = [(h[0].header.copy(), None)]
        parts += [(h[i].header.copy(), [(c.name, c.format, c.dim) for c in h[i].columns])
                  for i in range(1, 5)]
        arrays = [None] + [{c.name: np.array(h[i].data[c.name]) if len(h[i].data) else None
                            for c in h[i].columns} for i in range(1, 5)]
    t_ours, t_astropy = [], []
    for k in range(n_files):
        t0 = time.perf_counter()
        write_mwm_star(folder / f"w{k}.fits", pair, {"SDSS_ID": k}, layout="dr20", overwrite=True)
        t1 = time.perf_counter()
        hdus = [fits.PrimaryHDU(header=parts[0][0])]
        for (header, cols), data in zip(parts[1:], arrays[1:], strict=True):
            columns = [fits.Column(name, fmt, dim=dim, array=data[name]) for name, fmt, dim in cols]
            hdus.append(fits.BinTableHDU.from_columns(columns, header=header))
        hdul = fits.HDUList(hdus)
        for hdu in hdul:
            hdu.add_checksum()
        buffer = io.BytesIO()
        hdul.writeto(buffer)
        (folder / f"a{k}.fits").write_bytes(buffer.getvalue())
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_astropy.append(t2 - t1)
    return 1e3 * statistics.fmean(t_ours), 1e3 * statistics.fmean(t_astropy)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=500, help="files per format (≥ 500 for the issue's rule)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    import specutils
    from specutils import SpectrumList

    lines = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="starlabels-bench-readers-") as tmp:
        folder = Path(tmp)
        rows = []
        for name, (template, fmt, direct) in _templates(folder).items():
            files = []
            for i in range(args.files):
                f = folder / name.split()[0] / f"{i:05d}.fits"
                f.parent.mkdir(exist_ok=True)
                shutil.copyfile(template, f)
                files.append(f)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for f in files:  # warm the page cache
                    f.read_bytes()
                arrays = _compare(direct(files[0]), SpectrumList.read(files[0], format=fmt))
                t_su, t_direct, t_content = [], [], []
                for f in files:
                    t0 = time.perf_counter()
                    SpectrumList.read(f, format=fmt)
                    t1 = time.perf_counter()
                    direct(f)
                    t2 = time.perf_counter()
                    read_spectra(f)
                    t3 = time.perf_counter()
                    t_su.append(t1 - t0)
                    t_direct.append(t2 - t1)
                    t_content.append(t3 - t2)
            su, di, co = (1e3 * statistics.fmean(t) for t in (t_su, t_direct, t_content))
            rows.append((name, su, di, co, su / di, arrays))
            print(f"{name}: specutils {su:.2f} ms/file, direct astropy {di:.2f} ms/file, read_spectra "
                  f"{co:.2f} ms/file; specutils / direct = {su / di:.2f}; arrays: {arrays}", flush=True)
    with tempfile.TemporaryDirectory(prefix="starlabels-bench-writers-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_ours, w_astropy = _writer_costs(Path(tmp), max(20, args.files // 5))
    print(f"writing an mwmStar: write_mwm_star {w_ours:.2f} ms/file, astropy from_columns+writeto "
          f"{w_astropy:.2f} ms/file; astropy / ours = {w_astropy / w_ours:.2f}", flush=True)
    lines.append(f"Files per format: {args.files} (copies of one template each); 1 process, 1 thread; "
                 f"Python {platform.python_version()}, numpy {np.__version__}, specutils "
                 f"{specutils.__version__}, {platform.machine()}; page cache warm; readers alternated "
                 f"file by file; load average (1 min) {load_before[0]:.1f} before, "
                 f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs (a shared machine).")
    lines.append("")
    lines.append("| format | specutils ms/file | direct astropy ms/file | read_spectra (by content) "
                 "ms/file | specutils / direct | specutils arrays vs ours |")
    lines.append("|---|---|---|---|---|---|")
    for name, su, di, co, ratio, arrays in rows:
        lines.append(f"| {name} | {su:.2f} | {di:.2f} | {co:.2f} | {ratio:.2f} | {arrays} |")
    lines.append("")
    lines.append(f"Writing ({max(20, args.files // 5)} mwmStar files, APOGEE + BOSS, DR20 layout, "
                 "alternated): "
                 f"`write_mwm_star` {w_ours:.2f} ms/file; astropy writing the same HDUs "
                 f"(`BinTableHDU.from_columns`, `add_checksum`, `writeto`) {w_astropy:.2f} ms/file; "
                 f"ratio astropy / ours = {w_astropy / w_ours:.2f}.")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        cmd = "python bench/readers.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.write_text("# Reader cost: specutils sdss_v loaders vs direct astropy\n\n"
                            f"Command: `{cmd.strip()}`\n\n{table}\n")


if __name__ == "__main__":
    main()
