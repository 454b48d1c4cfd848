"""Train and apply The Cannon (Casey et al., PyPI ``annieslasso``, imported as ``thecannon``).

Runs in its own virtual environment (The Cannon needs numpy<2), started by ``bench/accuracy.py``
as a subprocess; arrays come and go through ``.npz`` files. Uses only numpy and thecannon.

    python cannon_runner.py IN.npz OUT.npz

IN.npz: ``train_flux``, ``train_ivar`` (N, P) continuum-normalised, ``train_labels`` (N, L)
(rows with any missing label are dropped here, since The Cannon cannot use them),
``label_names`` (L,), and any number of test sets ``test_<name>_flux`` / ``test_<name>_ivar``.
Optional ``initial_labels`` (K, L): starting points of the test step, each tried for every
spectrum and the best χ² kept (The Cannon's default is one start at the training-label mean,
which for a sample of giants *and* dwarfs lies between the two and can trap the fit).
Optional ``regularization`` (scalar): the L1 strength Λ (Casey et al. 2016). Optional
``polish_scatter`` (true): also write ``s2_polished``, the peer's own scatter objective
(``fitting._scatter_objective_function``) minimised again from its s by the same optimiser
(``scipy.optimize.fmin``) with xtol 1e-12 — ``train`` calls fmin with its default xtol 1e-4 in s.
OUT.npz: ``pred_<name>`` (M, L) labels for each test set (NaN where the fit failed),
``cov_<name>`` (M, L, L) ``leastsq``'s covariance (in The Cannon's *scaled* labels),
``chi2_<name>`` (M,), ``theta`` (P, T), ``s2`` (P,), ``fiducials``/``scales`` (L,),
``train_seconds``, ``test_seconds`` (all sets), ``test_seconds_<name>``, ``n_train``.
"""

import sys
import time
import warnings

import numpy as np
import thecannon as tc

MISSING = -9999.0


def main(inp: str, out: str) -> None:
    d = np.load(inp, allow_pickle=False)
    names = [str(n) for n in d["label_names"]]
    labels = d["train_labels"].astype(float)
    keep = np.all((labels != MISSING) & np.isfinite(labels), axis=1)
    flux = d["train_flux"][keep].astype(float)
    ivar = d["train_ivar"][keep].astype(float)
    vectorizer = tc.vectorizer.PolynomialVectorizer(names, 2)  # quadratic model
    reg = float(d["regularization"]) if "regularization" in d.files else None
    model = tc.CannonModel(labels[keep], flux, ivar, vectorizer, regularization=reg)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(threads=1)
    result = {"train_seconds": np.array(time.perf_counter() - t0), "n_train": np.array(keep.sum()),
              "theta": np.asarray(model.theta), "s2": np.asarray(model.s2),
              "fiducials": np.asarray(model._fiducials), "scales": np.asarray(model._scales)}
    print(f"trained on {keep.sum()} spectra in {result['train_seconds']:.1f} s", flush=True)
    if "polish_scatter" in d.files and bool(d["polish_scatter"]):
        import scipy.optimize as op
        from thecannon import fitting

        s2 = np.array(model.s2, dtype=float)
        resid2 = (flux - model.design_matrix @ np.asarray(model.theta).T) ** 2
        for p in np.flatnonzero(np.isfinite(s2) & (s2 > 0)):
            s = op.fmin(fitting._scatter_objective_function, np.sqrt(s2[p]), args=(resid2[:, p], ivar[:, p]),
                        xtol=1e-12, ftol=1e-16, maxiter=10000, maxfun=10000, disp=False)
            s2[p] = float(s[0]) ** 2
        result["s2_polished"] = s2
    initial = d["initial_labels"].astype(float) if "initial_labels" in d.files else None
    t0 = time.perf_counter()
    for key in d.files:
        if key.startswith("test_") and key.endswith("_flux"):
            name = key[len("test_"):-len("_flux")]
            test_flux = d[key].astype(float)
            start = None
            if initial is not None:  # (M, K, L): every start for every spectrum
                start = np.broadcast_to(initial, (len(test_flux), *initial.shape)).copy()
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred, cov, meta = model.test(test_flux, d[f"test_{name}_ivar"].astype(float),
                                             initial_labels=start)
            result[f"test_seconds_{name}"] = np.array(time.perf_counter() - t1)
            result[f"pred_{name}"] = np.asarray(pred, dtype=float)
            L = len(names)
            result[f"cov_{name}"] = np.array([np.asarray(c, float) if c is not None and np.shape(c) == (L, L)
                                              else np.full((L, L), np.nan) for c in cov])
            result[f"chi2_{name}"] = np.array([m.get("chi_sq", np.nan) for m in meta], dtype=float)
            print(f"tested {name}: {len(test_flux)} spectra", flush=True)
    result["test_seconds"] = np.array(time.perf_counter() - t0)
    np.savez(out, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
