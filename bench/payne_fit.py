"""The Payne fit (starlabels.models.payne_fit): label recovery on emulator-made spectra, and fits of
the real APOGEE spectra in ../shared/data/real. Writes bench/results/payne_fit.md and the figures
bench/results/payne_fit_<name>.png.

Recovery: for each emulator, N stars with labels uniform in the inner 80 % of its label box, a
radial velocity uniform in ±30 km/s, a random smooth continuum per detector (±5 % linear and
quadratic Chebyshev terms), Gaussian noise of known σ = |flux|/SNR at SNR 50, 100, 200, and 1 % of
pixels flagged BADPIX with their flux replaced by garbage; the fit sees the apStar-grid arrays and
the bitmask. z = (fit − truth)/σ_Jacobian per label; targets |mean z| ≤ 0.1 and std z in 0.9–1.1.

Real spectra: each fitted with both emulators (the one that suits the star marked); visits of one
star compared by χ²/dof of the visit differences, Σ_visits (x_i − x̄_w)²/σ_i² / (n − 1) per label.

Recovery fits use 2 starting points and a ±40 km/s velocity scan; real spectra 4 starts, ±150 km/s.

Run: ``PYTHONPATH=src python bench/payne_fit.py [--quick] [--n 600]`` (threads: torch default; on a
shared machine set OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
RESULTS = ROOT / "bench" / "results"
SNRS = (50, 100, 200)
EMULATORS = {
    "dwarfs": ("payne_apogee_dwarfs_5label.npz", ("TEFF", "LOGG", "FE_H", "ALPHA_M", "VMACRO"), 2),
    "kurucz": ("payne_kurucz_4label.npz", ("TEFF", "LOGG", "FE_H", "ALPHA_M"), 4),
}


def make_model(kind: str, **kwargs):
    from starlabels.models.payne_fit import payne_model

    name, labels, degree = EMULATORS[kind]
    kwargs.setdefault("continuum_degree", degree)
    return payne_model(SHARED / "emulators" / name, labels,
                       fit_mask=SHARED / "apogee" / "payne_fit_mask_7214.npz", **kwargs)


def simulate(model, n: int, snr: float, rng: np.random.Generator):
    """Emulator-made apStar-grid spectra: (flux, error, bitmask, truth (n, L), rv (n,))."""
    sm = model.spectrum_model()
    n_lab = sm.n_labels
    s = rng.uniform(-0.4, 0.4, (n, n_lab))
    rv = rng.uniform(-30.0, 30.0, n)
    c = np.zeros((n, sm.n_continuum))
    c[:, :: model.continuum_degree + 1] = 1.0
    for k in (1, 2):
        c[:, k:: model.continuum_degree + 1] = rng.uniform(-0.05, 0.05, (n, len(model.segments)))
    theta = torch.as_tensor(np.c_[s, rv, c])
    clean = sm(theta, jacobian=False)[0].numpy()
    sigma = np.abs(clean) / snr
    noisy = clean + rng.normal(size=clean.shape) * sigma
    bad = rng.random(clean.shape) < 0.01
    noisy[bad] = rng.choice([0.0, 1e4, -50.0], size=bad.sum())
    flux = np.full((n, model.n_input_pixels), np.nan)
    error = np.full_like(flux, np.nan)
    bitmask = np.zeros(flux.shape, np.int32)
    flux[:, model.pixel_index], error[:, model.pixel_index] = noisy, sigma
    bitmask[:, model.pixel_index] = np.where(bad, 1, 0)
    lo, hi = model.emulator.label_range
    return flux, error, bitmask, (s + 0.5) * (hi - lo) + lo, rv


def recovery(kinds, n: int, seed: int, log) -> tuple[str, bool]:
    rows = ["| emulator | SNR | label | N | median σ | mean z (bias/σ) ± s.e. | std z | σ_MAD z | "
            "target met |", "|---|---|---|---|---|---|---|---|---|"]
    all_ok = True
    for kind in kinds:
        model = make_model(kind, n_starts=2, rv_grid=np.arange(-40.0, 40.5, 2.0), batch_size=32)
        for snr in SNRS:
            rng = np.random.default_rng([seed, snr, len(kind)])
            flux, error, bitmask, truth, rv = simulate(model, n, snr, rng)
            t0 = time.perf_counter()
            fit = model.fit(flux, error, bitmask)
            dt = time.perf_counter() - t0
            ok_rows = fit.converged
            log(f"{kind} SNR {snr}: {n} spectra in {dt:.1f} s ({dt / n:.3f} s/spectrum), "
                f"{ok_rows.sum()} converged")
            cols = [*model.label_names, "RV"]
            est = np.c_[fit.labels, fit.rv][ok_rows]
            sig = np.c_[fit.std, fit.rv_err][ok_rows]
            tru = np.c_[truth, rv][ok_rows]
            z = (est - tru) / sig
            for k, name in enumerate(cols):
                zk = z[:, k]
                mean, std = float(np.mean(zk)), float(np.std(zk, ddof=1))
                smad = float(1.4826 * np.median(np.abs(zk - np.median(zk))))
                met = abs(mean) <= 0.1 and 0.9 <= std <= 1.1
                if name != "RV":
                    all_ok &= met
                rows.append(f"| {kind} | {snr} | {name} | {zk.size}/{n} | {np.median(sig[:, k]):.3g} | "
                            f"{mean:+.3f} ± {std / np.sqrt(zk.size):.3f} | {std:.3f} | {smad:.3f} | "
                            f"{'yes' if met else 'NO'} |")
    return "\n".join(rows), all_ok


def _to_apstar(model, a: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(a)
    out = np.full((a.shape[0], model.n_input_pixels), np.nan)
    out[:, model.pixel_index] = a
    return out


def real_spectra(model) -> dict[str, tuple]:
    """name → (flux, error, bitmask, description) on the apStar grid."""
    from starlabels.io.apogee import read_apstar, read_apvisit

    real = SHARED / "real"
    star = read_apstar(real / "apStar-dr17-2M19485057+5005279.fits")
    visit = read_apvisit(real / "apVisit-r13-9518-57729-104.fits", resample=True, rest_frame=True)
    pv = np.load(real / "payne_visits_2M06133561+2433362.npz")
    pc = np.load(real / "payne_combined_2M13012770+5754582.npz")
    out = {
        "apStar 2M19485057+5005279 (combined)": (star.flux[None], star.error[None], star.bitmask[None]),
        "apVisit 2M00242666+5341178 (rest frame by header VRAD)":
            (visit.flux[None], visit.error[None], visit.bitmask[None]),
        "Payne combined 2M13012770+5754582": (_to_apstar(model, pc["spectrum"]),
                                              _to_apstar(model, pc["spec_err"]), None),
    }
    for i in range(pv["spectra"].shape[0]):
        out[f"Payne visit {i + 1} 2M06133561+2433362 (HJD {pv['hjds'][i]:.1f}, "
            f"VHELIO {pv['vhelios'][i]:+.1f})"] = (
            _to_apstar(model, pv["spectra"][i]), _to_apstar(model, pv["spec_errs"][i]), None)
    return out


def velocity_dips(model, fit, step: float = 2.0, span: float = 150.0) -> list[tuple[float, float]]:
    """The three deepest local minima of χ²/dof(v) at the fitted labels of ``fit`` (one spectrum)."""
    sm = model.spectrum_model()
    n_lab = sm.n_labels
    theta = torch.as_tensor(fit.raw.theta[:1])
    rest, _ = sm.rest_frame(theta[:, :n_lab], jacobian=False)
    y = torch.as_tensor(fit.flux[:1])
    w = torch.as_tensor(np.where(np.isfinite(fit.error[:1]), 1.0 / fit.error[:1] ** 2, 0.0))
    vs = np.arange(-span, span + step / 2, step)
    chi = []
    for v in vs:
        shifted, _, _ = sm.shifted(rest, torch.tensor([v], dtype=torch.float64))
        c = sm.continuum_fit(shifted, y, w)
        chi.append(float((w * (y - (c @ sm.basis.T) * shifted) ** 2).sum()) / max(fit.raw.dof[0], 1))
    chi = np.asarray(chi)
    minima = [k for k in range(1, vs.size - 1) if chi[k] < chi[k - 1] and chi[k] < chi[k + 1]]
    return sorted(((float(vs[k]), float(chi[k])) for k in minima), key=lambda t: t[1])[:3]


def visit_chi2(labels: np.ndarray, std: np.ndarray) -> np.ndarray:
    """χ²/dof of the visits' differences per label: Σ (x_i − x̄_w)²/σ_i² / (n − 1)."""
    w = 1.0 / std**2
    mean = (w * labels).sum(0) / w.sum(0)
    return (((labels - mean) / std) ** 2).sum(0) / (labels.shape[0] - 1)


def real_section(kinds, log) -> str:
    from starlabels.evaluation.fit_plots import plot_spectrum_fit

    lines = []
    for kind in kinds:
        # raw apStar/apVisit flux needs more continuum freedom than the normalised Payne files
        model = make_model(kind, rv_grid=np.arange(-150.0, 150.5, 2.0), continuum_degree=4)
        spectra = real_spectra(model)
        lines += [f"\n### Emulator `{EMULATORS[kind][0]}`\n",
                  "| spectrum | " + " | ".join(model.label_names) + " | RV (km/s) | χ²/dof | converged |",
                  "|---|" + "---|" * (len(model.label_names) + 3)]
        visits, dips = [], []
        for name, (f, e, b) in spectra.items():
            t0 = time.perf_counter()
            fit = model.fit(f, e, b)
            log(f"{kind} {name}: {time.perf_counter() - t0:.1f} s, chi2/dof {fit.reduced_chi2[0]:.2f}")
            vals = " | ".join(f"{v:.4g} ± {s:.2g}" for v, s in zip(fit.labels[0], fit.std[0], strict=True))
            lines.append(f"| {name} | {vals} | {fit.rv[0]:+.2f} ± {fit.rv_err[0]:.2f} | "
                         f"{fit.reduced_chi2[0]:.2f} | {bool(fit.converged[0])} |")
            if name.startswith("Payne visit"):
                visits.append((fit.labels[0], fit.std[0]))
                dips.append(f"{name.split(' 2M')[0]}: " + ", ".join(
                    f"{v:+.0f} km/s ({c:.2f})" for v, c in velocity_dips(model, fit)))
            slug = name.split(" (")[0].replace(" ", "_").replace("+", "p")
            plot_spectrum_fit(
                model.wavelength, fit.flux[0], fit.error[0], fit.model[0], segments=model.segments,
                continuum=fit.continuum[0],
                labels={k: (v, s) for k, v, s in zip(model.label_names, fit.labels[0], fit.std[0],
                                                      strict=True)},
                title=f"{name} — {EMULATORS[kind][0]} (χ²/dof {fit.reduced_chi2[0]:.2f})",
                path=RESULTS / f"payne_fit_{kind}_{slug}.png",
            )
        lab = np.array([v[0] for v in visits])
        std = np.array([v[1] for v in visits])
        chi = visit_chi2(lab, std)
        lines += ["", "Visit-to-visit agreement of 2M06133561+2433362 (3 visits), χ²/dof of the "
                  "differences (target ≤ 2): " + ", ".join(
                      f"{n} {c:.3g}" for n, c in zip(model.label_names, chi, strict=True))]
        lines += ["", "χ²/dof against a trial velocity at each visit's fitted labels (continuum refitted "
                  "at each velocity), its three deepest local minima — a second dip far from the "
                  "fitted RV is the signature of a second star's lines: " + "; ".join(dips)]
        lines += ["", "Figures (data and model divided by the fitted continuum, residuals in σ, masked "
                  "pixels grey):", ""]
        lines += [f"![{p.stem}]({p.name})" for p in sorted(RESULTS.glob(f"payne_fit_{kind}_*.png"))]
    return "\n".join(lines)


PARTS = ("recovery-dwarfs", "recovery-kurucz", "real")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="spectra per emulator and SNR")
    ap.add_argument("--quick", action="store_true", help="30 spectra, dwarfs emulator only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--part", choices=(*PARTS, "all"), default="all",
                    help="run one part (parts can run in parallel processes), then --assemble")
    ap.add_argument("--assemble", action="store_true", help="write payne_fit.md from the parts")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"needs ../shared/data ({SHARED} absent)", file=sys.stderr)
        return 2
    parts_dir = RESULTS / ("payne_fit_quick_parts" if args.quick else "payne_fit_parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    if not args.assemble:
        n = 30 if args.quick else args.n
        todo = PARTS if args.part == "all" else (args.part,)
        if args.quick:
            todo = ("recovery-dwarfs", "real")
        for part in todo:
            run_part(part, n, args.seed, args.quick, parts_dir)
        if args.part != "all":
            return 0
    name = "payne_fit_quick.md" if args.quick else "payne_fit.md"
    (RESULTS / name).write_text(assemble(parts_dir, args.quick))
    print(f"wrote {RESULTS / name}")
    return 0


def run_part(part: str, n: int, seed: int, quick: bool, parts_dir: Path) -> None:
    log_lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_lines.append(msg)

    log(f"[{part}] torch {torch.__version__}, {torch.get_num_threads()} threads, float64 fits, "
        f"seed {seed}, N = {n} per emulator and SNR")
    if part.startswith("recovery"):
        table, ok = recovery((part.split("-")[1],), n, seed, log)
        text = [table, "", f"All label targets met: **{'yes' if ok else 'no'}** (RV rows shown, "
                "not targets)."]
    else:
        kinds = ("dwarfs",) if quick else ("dwarfs", "kurucz")
        text = [real_section(kinds, log)]
    text += ["", "```", *log_lines, "```", ""]
    print("\n".join(text))
    (parts_dir / f"{part}.md").write_text("\n".join(text))


def assemble(parts_dir: Path, quick: bool) -> str:
    text = ["# The Payne fit: label recovery and real spectra", "",
            f"Made by `bench/payne_fit.py{' --quick' if quick else ''}` (parts run as separate processes "
            "with `--part`, then `--assemble`; set-up in its docstring). Uncertainties are the "
            "Jacobian σ, uncalibrated. Discussion: [payne_fit_notes.md](payne_fit_notes.md).", ""]
    for part, title in (("recovery-dwarfs", "Recovery on emulator-made spectra: dwarfs emulator"),
                        ("recovery-kurucz", "Recovery on emulator-made spectra: Kurucz emulator"),
                        ("real", "Real spectra")):
        path = parts_dir / f"{part}.md"
        if path.is_file():
            text += [f"## {title}", "", path.read_text(), ""]
    return "\n".join(text)


if __name__ == "__main__":
    raise SystemExit(main())
