"""Payne emulator training (models.payne_train): per-pixel (1 or 2 hidden layers) vs shared trunk.

The training grid comes from the built-in line generator (starlabels.data.synthetic, labels TEFF,
LOGG, FE_H, MG_FE uniform in a box; continuum-normalised flux on The Payne's 7214 pixels), so
neither layout has the functional form of the spectra it learns. All layouts are trained in
this one run on the same grid, same float32, same torch threads, for a fixed number of epochs
(the shared trunk also for 4× as many, about the per-pixel network's training time), and
measured on the same held-out spectra: flux error (RMS, 99th percentile of |Δ|, share of
pixels with |Δ| > 0.005), training time, and the labels recovered by fitting held-out SNR-100
spectra with each emulator (PayneModel). Each saved ``.npz`` is read back with
starlabels.data.emulator.PayneEmulator and checked against the trained network.

Run: ``PYTHONPATH=src python bench/payne_train.py [--quick] [--rows per_pixel,per_pixel_2]
[--n-train N --epochs E]``; writes bench/results/payne_train.md (payne_train_quick.md with
--quick; payne_train_reduced.md when the grid, epochs or rows differ from the defaults).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LABELS = ("TEFF", "LOGG", "FE_H", "MG_FE")
BOX = np.array([[4000.0, 6500.0], [1.0, 5.0], [-1.0, 0.4], [-0.3, 0.5]])


def grid(n: int, seed: int):
    from starlabels.data.synthetic import SyntheticGenerator
    from starlabels.models.payne_fit import default_grid

    gen = SyntheticGenerator(elements=("MG",), seed=0)
    rng = np.random.default_rng(seed)
    labels = rng.uniform(BOX[:, 0], BOX[:, 1], (n, len(LABELS)))
    flux = gen.line_spectrum(labels)[:, default_grid()[1]]
    return labels, flux


def main(argv=None) -> int:
    from starlabels.data.emulator import PayneEmulator
    from starlabels.models.payne_fit import PayneModel
    from starlabels.models.payne_train import train_emulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grid, few epochs")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--n-fit", type=int, default=30, help="held-out spectra fitted for labels")
    ap.add_argument("--rows", default="", help="comma-separated keys of the rows to run (per_pixel, "
                    "per_pixel_2, dense, dense_long); default all")
    args = ap.parse_args(argv)
    n_train, epochs, n_fit = (400, 10, 10) if args.quick else (args.n_train, args.epochs, args.n_fit)
    t0 = time.perf_counter()
    x, y = grid(n_train, 1)
    vx, vy = grid(300, 2)
    tx, ty = grid(500, 3)
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 training, "
             f"grid {n_train} train / 300 validation / 500 test spectra × {y.shape[1]} pixels "
             f"(made in {time.perf_counter() - t0:.0f} s), Adam, batch 256"]
    print(lines[0], flush=True)
    variants = {
        "per_pixel": ("per-pixel, 1 hidden layer of 10 sigmoid units (Ting et al. 2019)",
                      dict(layout="per_pixel", hidden=10, learning_rate=1e-2)),
        "per_pixel_2": ("per-pixel, 2 hidden layers of 10 and 5 sigmoid units",
                        dict(layout="per_pixel", hidden_layers=2, hidden=(10, 5), learning_rate=1e-2)),
        "dense": ("shared trunk, 2 hidden layers of 300 leaky-ReLU units (The Payne public code)",
                  dict(layout="dense", hidden=(300, 300), learning_rate=2e-3)),
        "dense_long": ("shared trunk as above, 4× the epochs (about the per-pixel training time)",
                       dict(layout="dense", hidden=(300, 300), learning_rate=2e-3, epoch_factor=4)),
    }
    chosen = [k.strip() for k in args.rows.split(",") if k.strip()] or list(variants)
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {list(variants)}")
    rows = ["| emulator | parameters | epochs | train time (s) | s/epoch | best epoch | held-out RMS Δflux | "
            "99th pct abs Δflux | pixels with abs Δflux > 0.005 | read-back max diff | "
            "label σ_MAD at SNR 100 (TEFF, LOGG, FE_H, MG_FE) | fit time per star (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(4)
    err = np.abs(ty[:n_fit]) / 100.0
    noisy = ty[:n_fit] + rng.normal(size=err.shape) * err
    with tempfile.TemporaryDirectory() as tmp:
        for key in chosen:
            name, kw = variants[key]
            torch.manual_seed(0)
            kw = dict(kw)
            n_epochs = epochs * kw.pop("epoch_factor", 1)
            res = train_emulator(x, y, validation=(vx, vy), epochs=n_epochs, seed=0, **kw)
            path = res.save(Path(tmp) / f"{key}.npz")
            emu = PayneEmulator.load(path, label_names=LABELS, dtype=torch.float64)
            pred = emu(tx).numpy()
            delta = pred - ty
            n_par = sum(v.size for k, v in res.arrays.items() if k.startswith(("w_", "b_")))
            # read-back check: the file evaluated by the reader vs the arrays evaluated by hand
            manual = _evaluate(res.arrays, tx[:5])
            readback = float(np.max(np.abs(manual - pred[:5])))
            model = PayneModel(emu, LABELS, continuum_degree=2, rv_grid=np.arange(-10.0, 10.5, 2.0))
            flux = np.full((n_fit, model.n_input_pixels), np.nan)
            error = np.full_like(flux, np.nan)
            flux[:, model.pixel_index], error[:, model.pixel_index] = noisy, err
            t1 = time.perf_counter()
            fit = model.fit(flux, error)
            fit_s = (time.perf_counter() - t1) / n_fit
            resid = fit.labels - tx[:n_fit]
            smad = 1.4826 * np.median(np.abs(resid - np.median(resid, 0)), 0)
            rows.append(
                f"| {name} | {n_par:,} | {n_epochs} | {res.seconds:.1f} | {res.seconds / n_epochs:.2f} | "
                f"{res.best_epoch} | {np.sqrt(np.mean(delta**2)):.5f} | "
                f"{np.percentile(np.abs(delta), 99):.5f} | {np.mean(np.abs(delta) > 0.005):.2%} | "
                f"{readback:.1e} | {smad[0]:.1f} K, {smad[1]:.3f}, {smad[2]:.3f}, {smad[3]:.3f} | "
                f"{fit_s:.2f} |")
            print(rows[-1], flush=True)
    reduced = not args.quick and ((n_train, epochs, n_fit) != (1500, 60, 30) or chosen != list(variants))
    command = " ".join(["bench/payne_train.py", *(argv if argv is not None else sys.argv[1:])])
    text = "\n".join(["# Payne emulator training: per-pixel vs shared trunk", "",
                      f"Made by `{command}` (set-up in its docstring)."
                      + (" Reduced size (grid, epochs or rows) so it runs in minutes on a loaded "
                         "2-core machine; not the default run." if reduced else ""),
                      "", *lines, "", *rows, ""])
    name = ("payne_train_quick.md" if args.quick else
            "payne_train_reduced.md" if reduced else "payne_train.md")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(text)
    print(f"wrote {RESULTS / name}")
    return 0


def _evaluate(arrays: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """The Payne's evaluation formula in numpy (README of ../shared/data), all three layouts."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    s = (labels - a["x_min"]) / (a["x_max"] - a["x_min"]) - 0.5
    if a["w_array_0"].ndim == 3 and "w_array_2" in a:  # two hidden layers per pixel
        a1 = 1 / (1 + np.exp(-(np.einsum("pil,nl->npi", a["w_array_0"], s) + a["b_array_0"])))
        a2 = 1 / (1 + np.exp(-(np.einsum("pji,npi->npj", a["w_array_1"], a1) + a["b_array_1"])))
        return np.einsum("pj,npj->np", a["w_array_2"], a2) + a["b_array_2"]
    if a["w_array_0"].ndim == 3:
        inner = np.einsum("phl,nl->nph", a["w_array_0"], s) + a["b_array_0"]
        return np.einsum("ph,nph->np", a["w_array_1"], 1 / (1 + np.exp(-inner))) + a["b_array_1"]

    def leaky(z):
        return np.where(z > 0, z, 0.01 * z)

    h1 = leaky(s @ a["w_array_0"].T + a["b_array_0"])
    h2 = leaky(h1 @ a["w_array_1"].T + a["b_array_1"])
    return h2 @ a["w_array_2"].T + a["b_array_2"]


if __name__ == "__main__":
    raise SystemExit(main())
