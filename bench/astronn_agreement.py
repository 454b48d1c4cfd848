"""astroNN → starlabels import, checked against astroNN 1.1.0 itself (issue 16).

1. Simulates APOGEE-like apStar spectra with the built-in synthetic generator (TEFF, LOGG, FE_H and
   17 element abundances; SNR 150).
2. In astroNN's own virtual environment (``bench/.astronn-venv``, created on first use: Python 3.11,
   ``tensorflow-cpu==2.13.1``, ``tensorflow-probability==0.21.0``, ``astroNN==1.1.0``),
   ``bench/astronn_runner.py`` normalises them with astroNN's ``apogee_continuum`` (DR17 mask,
   default bitmask bits), briefly trains ``ApogeeBCNN`` (4 labels) and ``ApogeeBCNNCensored`` (its
   fixed 22 outputs), saves both with astroNN's ``save()``, reloads them with ``load_folder`` and
   predicts the test spectra: dropout off (every ``MCDropout.disable_layer``), twice with 100
   MC-dropout passes, and on the raw apStar test spectra.
3. Imports both folders with ``starlabels.models.from_astronn``, saves and reloads them as
   starlabels model folders, and predicts the same spectra with ``starlabels.predict``.
4. Compares and writes ``bench/results/astronn_import.md`` (and ``--json``):

   * dropout off, astroNN's continuum-normalised input (``preprocessed=True``): max relative
     difference of the means, ``|Δ| / max(|astroNN|, σ_label)`` (σ_label: astroNN's ``labels_std``;
     plain ``|Δ|/|astroNN|`` is also printed — it is large only for values near 0), and of the
     predicted σ (variance head);
   * raw apStar input (starlabels' ``continuum_weights="astronn"`` preprocessing against
     ``apogee_continuum`` + astroNN): the same for the means, and the normalised flux itself;
   * MC dropout, 100 passes: the difference of the means in units of its Monte-Carlo error,
     z = Δ / sqrt(2 σ²_model / 100), for astroNN vs starlabels and for astroNN vs astroNN (two runs)
     — RMS(z) ≈ 1 when they agree within MC error; and the RMS relative difference of σ (total and
     model part) starlabels − astroNN next to astroNN run 1 − run 2.

Usage::

    .venv/bin/python bench/astronn_agreement.py            # 5–10 min on 2 cores once the venv exists
    .venv/bin/python bench/astronn_agreement.py --quick --workdir /tmp/x --out /tmp/x/report.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".astronn-venv"
RUNNER = ROOT / "bench" / "astronn_runner.py"
PACKAGES = ("tensorflow-cpu==2.13.1", "tensorflow-probability==0.21.0", "astroNN==1.1.0")
ELEMENTS = ("C", "N", "O", "NA", "MG", "AL", "SI", "P", "S", "K", "CA", "TI", "V", "CR", "MN", "CO", "NI")
#: astroNN ApogeeBCNNCensored's 22 outputs, filled from the generator's labels (C1 = C, Ti2 = Ti)
CENSORED_FROM = (
    "TEFF",
    "LOGG",
    "C_FE",
    "C_FE",
    "N_FE",
    "O_FE",
    "NA_FE",
    "MG_FE",
    "AL_FE",
    "SI_FE",
    "P_FE",
    "S_FE",
    "K_FE",
    "CA_FE",
    "TI_FE",
    "TI_FE",
    "V_FE",
    "CR_FE",
    "MN_FE",
    "FE_H",
    "CO_FE",
    "NI_FE",
)
BCNN_LABELS = ("TEFF", "LOGG", "FE_H", "MG_FE")
SIZES = {
    "full": {"n_train": 1000, "n_test": 100, "epochs": 4},
    "quick": {"n_train": 200, "n_test": 12, "epochs": 1},
}
N_PASSES = 100


class BenchError(RuntimeError):
    """The benchmark cannot run (e.g. astroNN's environment cannot be installed)."""


def ensure_venv(venv: Path = VENV, log=print) -> Path:
    """astroNN's interpreter, creating its virtual environment on first use (Python 3.11 needed)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import tensorflow, astroNN, h5py"]
    cheap = [
        str(python),
        "-c",
        "import importlib.util as u, sys; "
        "sys.exit(not all(u.find_spec(m) for m in ('tensorflow', 'astroNN', 'h5py')))",
    ]
    if python.is_file() and subprocess.run(cheap, capture_output=True).returncode == 0:
        return python  # installed earlier (importing TensorFlow just to check costs ~5 s)
    base = _python311()
    log(f"creating astroNN's virtual environment {venv} with {base} ({' '.join(PACKAGES)})")
    try:
        subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise BenchError(
            f"could not set up astroNN's environment {venv}: {(exc.stderr or '')[-2000:]}"
        ) from None
    if subprocess.run(probe, capture_output=True).returncode != 0:
        raise BenchError(f"{venv}: astroNN does not import after installation")
    return python


def _python311() -> str:
    """A Python 3.11 interpreter (TensorFlow 2.13 has no wheels for newer Pythons)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for name in ("python3.11", "/usr/bin/python3.11"):
        try:
            out = subprocess.run([name, "--version"], capture_output=True, text=True)
        except OSError:
            continue
        if out.returncode == 0:
            return name
    raise BenchError(
        "could not set up astroNN's environment: no Python 3.11 found (TensorFlow 2.13 needs it)"
    )


def simulate(n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    from starlabels.data.synthetic import SyntheticGenerator

    gen = SyntheticGenerator(elements=ELEMENTS, seed=seed)
    spec = gen.simulate(n_train + n_test, snr=150.0, seed=seed + 1)
    index = {n: i for i, n in enumerate(spec.label_names)}
    labels = spec.labels
    return {
        "flux": spec.flux,
        "error": spec.error,
        "bitmask": spec.bitmask,
        "bcnn": labels[:, [index[n] for n in BCNN_LABELS]],
        "censored": labels[:, [index[n] for n in CENSORED_FROM]],
    }


def run_astronn(
    python: Path, data: dict[str, np.ndarray], n_train: int, epochs: int, seed: int, work: Path, log=print
) -> dict[str, np.ndarray]:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("bcnn", "censored", "bcnn_starlabels", "censored_starlabels"):
        # astroNN's save() never overwrites: it would write bcnn_2/ beside an old bcnn/
        shutil.rmtree(work / name, ignore_errors=True)
    inp = work / "astronn_in.npz"
    tr, te = slice(0, n_train), slice(n_train, None)
    np.savez(
        inp,
        raw_train_flux=data["flux"][tr],
        raw_train_error=data["error"][tr],
        raw_train_bitmask=data["bitmask"][tr],
        raw_flux=data["flux"][te],
        raw_error=data["error"][te],
        raw_bitmask=data["bitmask"][te],
        train_labels_bcnn=data["bcnn"][tr],
        train_labels_censored=data["censored"][tr],
        targetname_bcnn=np.array(["teff", "logg", "Fe", "Mg"]),
        epochs=epochs,
        batch_size=64,
        seed=seed,
        mc_num=N_PASSES,
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(RUNNER), str(inp), str(work)], capture_output=True, text=True, env=env, cwd=work
    )
    if proc.returncode != 0:
        raise BenchError(f"astronn_runner.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    log(f"astroNN side: {time.perf_counter() - t0:.0f} s")
    return dict(np.load(work / "astronn_out.npz"))


def _astronn_data(python: Path) -> Path:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('astroNN').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()) / "data"


def starlabels_side(
    work: Path,
    data_dir: Path,
    an: dict[str, np.ndarray],
    raw: dict[str, np.ndarray],
    key: str,
    seed: int,
) -> dict[str, Any]:
    import starlabels
    from starlabels.models import from_astronn
    from starlabels.models.astronn_import import astronn_predict
    from starlabels.preprocess import continuum_normalize

    model = from_astronn(
        work / key,
        continuum_mask=data_dir / "dr17_contmask.npy",
        element_windows=data_dir / "aspcap_l31c_masks.npy",
    )
    folder = model.save(work / f"{key}_starlabels")
    x = an["test_flux"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "dropout off can be worse": wanted here
        off = starlabels.predict(folder, x, preprocessed=True, uncertainty=None)
        raw_off = starlabels.predict(folder, raw["flux"], raw["error"], bitmask=raw["bitmask"],
                                     uncertainty=None)
    mc = [
        starlabels.predict(
            folder, x, preprocessed=True, uncertainty="mc_dropout", n_samples=N_PASSES, seed=seed + i
        )
        for i in (1, 2)
    ]
    loaded = starlabels.load_model(folder, device="cpu")
    an_rule = astronn_predict(loaded, x, N_PASSES, seed=seed + 3)[1]
    pp = loaded.preprocess_config()
    cont, _ = pp.apply(raw["flux"], raw["error"], raw["bitmask"])
    own, _ = continuum_normalize(raw["flux"], raw["error"], raw["bitmask"], continuum_mask=pp.continuum_mask)
    return {
        "names": off.label_names,
        "mean": off.mean,
        "sigma": off.std,
        "raw_mean": raw_off.mean,
        "continuum": cont,
        "own_continuum": own,
        "astronn_rule_total": an_rule["total"],
        "label_std": np.asarray(model.label_scaler.std),
        **{
            f"mc{i + 1}_{k}": v
            for i, p in enumerate(mc)
            for k, v in (("mean", p.mean), ("total", p.std),
                         ("model", np.sqrt(p.variance_parts["epistemic"])))
        },
    }


def _rel(ours: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> tuple[float, float]:
    d = np.abs(ours - ref)
    return float(np.max(d / np.maximum(np.abs(ref), scale))), float(np.max(d / np.abs(ref)))


def compare(an: dict[str, np.ndarray], sl: dict[str, Any], key: str) -> dict[str, float]:
    s = sl["label_std"]
    r: dict[str, float] = {}
    r["mean_rel"], r["mean_rel_plain"] = _rel(sl["mean"], an[f"{key}_mean"], s)
    r["sigma_rel"] = float(np.max(np.abs(sl["sigma"] - an[f"{key}_sigma"]) / an[f"{key}_sigma"]))
    r["raw_mean_rel"], r["raw_mean_rel_plain"] = _rel(sl["raw_mean"], an[f"{key}_raw_mean"], s)
    err = np.sqrt(2.0 / N_PASSES) * an[f"{key}_mc1_model"]  # MC error of a difference of two means
    for name, a, b in (
        ("an_an", an[f"{key}_mc1_mean"], an[f"{key}_mc2_mean"]),
        ("sl_sl", sl["mc1_mean"], sl["mc2_mean"]),
        ("sl_an", sl["mc1_mean"], an[f"{key}_mc1_mean"]),
    ):
        r[f"z_rms_{name}"] = float(np.sqrt(np.mean(((a - b) / err) ** 2)))
    for part, ak in (("total", "total"), ("model", "model")):
        ref = an[f"{key}_mc1_{ak}"]
        r[f"{part}_rms_an_an"] = float(np.sqrt(np.mean(((an[f"{key}_mc2_{ak}"] - ref) / ref) ** 2)))
        r[f"{part}_rms_sl_sl"] = float(np.sqrt(np.mean(((sl[f"mc2_{part}"] - sl[f"mc1_{part}"]) / ref) ** 2)))
        r[f"{part}_rms_sl_an"] = float(np.sqrt(np.mean(((sl[f"mc1_{part}"] - ref) / ref) ** 2)))
        r[f"{part}_median_sl_an"] = float(np.median((sl[f"mc1_{part}"] - ref) / ref))
        r[f"{part}_median_an_an"] = float(np.median((an[f"{key}_mc2_{ak}"] - ref) / ref))
    ref = an[f"{key}_mc1_total"]
    r["rule_total_rms_sl_an"] = float(np.sqrt(np.mean(((sl["astronn_rule_total"] - ref) / ref) ** 2)))
    r["rule_total_median_sl_an"] = float(np.median((sl["astronn_rule_total"] - ref) / ref))
    return r


def report(results: dict[str, dict[str, float]], meta: dict[str, Any]) -> str:
    cols = list(results)
    rows = [
        ("dropout off, max \\|Δmean\\| / max(\\|astroNN\\|, σ_label)", "mean_rel", "≤ 1e-4"),
        ("dropout off, max \\|Δmean\\| / \\|astroNN\\|", "mean_rel_plain", "(values near 0 inflate it)"),
        ("dropout off, max \\|Δσ\\| / σ (variance head)", "sigma_rel", "≤ 1e-3"),
        ("raw apStar, max \\|Δmean\\| / max(\\|astroNN\\|, σ_label)", "raw_mean_rel", "≤ 1e-4"),
        ("raw apStar, max \\|Δ normalised flux\\|", "continuum_max_abs", "—"),
        ("raw apStar, median \\|Δ flux\\| of our 1/σ² continuum (not used)", "own_continuum_median_abs", "—"),
        ("MC mean: RMS z, starlabels − astroNN", "z_rms_sl_an", "≈ 1"),
        ("MC mean: RMS z, astroNN run 1 − run 2", "z_rms_an_an", "≈ 1"),
        ("MC mean: RMS z, starlabels seed 1 − seed 2", "z_rms_sl_sl", "≈ 1"),
        ("MC σ total: RMS rel. diff., starlabels − astroNN", "total_rms_sl_an", "≈ astroNN − astroNN"),
        ("MC σ total: RMS rel. diff., astroNN − astroNN", "total_rms_an_an", ""),
        ("MC σ total: median rel. diff., starlabels − astroNN", "total_median_sl_an", "≈ astroNN − astroNN"),
        ("MC σ total: median rel. diff., astroNN − astroNN", "total_median_an_an", ""),
        (
            "MC σ total, astroNN's rule (`astronn_predict`): RMS rel. diff. − astroNN",
            "rule_total_rms_sl_an",
            "≈ astroNN − astroNN",
        ),
        (
            "MC σ total, astroNN's rule: median rel. diff. − astroNN",
            "rule_total_median_sl_an",
            "≈ astroNN − astroNN",
        ),
        ("MC σ model: RMS rel. diff., starlabels − astroNN", "model_rms_sl_an", "≈ astroNN − astroNN"),
        ("MC σ model: RMS rel. diff., astroNN − astroNN", "model_rms_an_an", ""),
        ("MC σ model: median rel. diff., starlabels − astroNN", "model_median_sl_an", "≈ astroNN − astroNN"),
        ("MC σ model: median rel. diff., astroNN − astroNN", "model_median_an_an", ""),
    ]
    lines = [
        "# astroNN model import: starlabels against astroNN 1.1.0",
        "",
        f"Generated by `bench/astronn_agreement.py{' --quick' if meta['quick'] else ''}` on {meta['date']} "
        f"({meta['seconds']:.0f} s). astroNN {meta['astronn']} under TensorFlow {meta['tf']} "
        "(CPU) in `bench/.astronn-venv`; starlabels with torch on CPU, float32 both.",
        "",
        f"Data: {meta['n_train']} training and {meta['n_test']} test spectra from the synthetic generator "
        "(SNR 150, with its bad pixels, cosmic rays, sky lines and persistence), normalised by astroNN's "
        "`apogee_continuum` (DR17 continuum mask); "
        f"{meta['n_kept']} training spectra kept (astroNN's continuum puts a few at normalised flux "
        "up to ~1e5, which makes astroNN's training loss NaN; those with any |flux| ≥ 3 are left out); "
        f"{meta['epochs']} training epochs per network (astroNN's own `train`), saved with astroNN's "
        "`save()`, read back by astroNN's `load_folder` for its predictions and by "
        "`starlabels.models.from_astronn` for ours (then saved as a starlabels model folder and "
        f"loaded again). MC dropout: {N_PASSES} passes, two independent runs on each side.",
        "",
        "| quantity | " + " | ".join(cols) + " | target |",
        "|---|" + "---:|" * len(cols) + "---|",
    ]
    for label, k, target in rows:
        lines.append(f"| {label} | " + " | ".join(f"{results[c][k]:.3g}" for c in cols) + f" | {target} |")
    lines += [
        "",
        "z = Δmean / sqrt(2σ²_model/100): a difference of two independent 100-pass means in units "
        "of its Monte-Carlo error (σ_model from astroNN run 1). σ total = sqrt(σ²_model + "
        "σ²_predictive); astroNN takes the predictive part as exp(mean of the passes' log-variances), "
        "`starlabels.predict` as the mean of exp(log-variance) (never smaller), "
        "`starlabels.models.astronn_import.astronn_predict` as astroNN. Relative differences are "
        "(x − astroNN run 1)/astroNN run 1, so run 1's own Monte-Carlo noise enters every row: "
        "compare each with its astroNN − astroNN row.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="test-sized run (fewer spectra, 1 epoch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".work" / "astronn")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "astronn_import.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    size = SIZES["quick" if args.quick else "full"]
    python = ensure_venv()
    data = simulate(size["n_train"], size["n_test"], args.seed)
    an = run_astronn(python, data, size["n_train"], size["epochs"], args.seed, args.workdir)
    te = slice(size["n_train"], None)
    raw = {"flux": data["flux"][te], "error": data["error"][te], "bitmask": data["bitmask"][te]}
    data_dir = _astronn_data(python)
    results = {}
    for key in ("bcnn", "censored"):
        sl = starlabels_side(args.workdir, data_dir, an, raw, key, args.seed)
        results[key] = compare(an, sl, key)
        results[key]["continuum_max_abs"] = float(np.max(np.abs(sl["continuum"] - an["test_flux"])))
        results[key]["own_continuum_median_abs"] = float(
            np.median(np.abs(sl["own_continuum"] - an["test_flux"]))
        )
        print(key, json.dumps(results[key], indent=1), flush=True)
    tf_version, astronn_version = str(an["tf_version"]), str(an["astronn_version"])
    meta = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - t0,
        "tf": tf_version,
        "n_kept": int(an["train_keep"].sum()),
        "astronn_data": str(data_dir),
        "astronn": astronn_version,
        **size,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(results, meta))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "meta": meta}, indent=1))
    print(report(results, meta))
    return results


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"error: {exc}")
