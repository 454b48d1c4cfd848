"""Train, save and apply astroNN 1.1.0's ``ApogeeBCNN`` and ``ApogeeBCNNCensored`` (Leung & Bovy 2019).

Runs inside astroNN's own virtual environment (TensorFlow 2.13, created by
``bench/astronn_agreement.py``), as a subprocess; arrays come and go through ``.npz`` files. Uses
only numpy, TensorFlow and astroNN — nothing of starlabels.

    python astronn_runner.py IN.npz WORKDIR

IN.npz:
    ``raw_train_flux``, ``raw_train_error``, ``raw_train_bitmask`` (N, 8575) and ``raw_flux``,
    ``raw_error``, ``raw_bitmask`` (M, 8575) apStar-grid training and test spectra, normalised here
    by astroNN's ``apogee_continuum(..., bitmask=..., dr=17)``; ``train_labels_bcnn`` (N, Lb) with
    ``targetname_bcnn`` (Lb,) and ``train_labels_censored`` (N, 22) (astroNN's censored network has
    22 fixed outputs); scalars ``epochs``, ``batch_size``, ``seed``, ``mc_num``.

WORKDIR/bcnn/ and WORKDIR/censored/ become astroNN model folders written by astroNN's own
``save()``; WORKDIR/astronn_out.npz holds, for ``net`` in (bcnn, censored):
    ``test_flux`` (M, 7514): the normalised test spectra;
    ``<net>_mean``, ``<net>_sigma`` (M, L): ``model.test(test_flux)`` of the folder reloaded with
    ``load_folder``, every ``MCDropout`` disabled (its predictive σ, ``exp(½ log_var)·std``);
    ``<net>_mc{1,2}_mean``, ``<net>_mc{1,2}_total``, ``<net>_mc{1,2}_model``,
    ``<net>_mc{1,2}_predictive``: two independent MC-dropout runs of ``mc_num`` passes;
    ``<net>_raw_mean`` (M, L): dropout off, on the normalised raw test spectra (the same as
    ``<net>_mean``, kept for the raw-path comparison); ``<net>_train_seconds``.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

if not hasattr(tf.keras, "__version__"):  # astroNN records it as metadata; TF >= 2.13 dropped it
    tf.keras.__version__ = tf.__version__

import astroNN
from astroNN.apogee import apogee_continuum
from astroNN.models import ApogeeBCNN, ApogeeBCNNCensored, load_folder
from astroNN.nn.layers import MCDropout

#: training spectra with a larger normalised flux anywhere are left out (see main)
MAX_TRAIN_FLUX = 3.0


def _dropout_layers(model):
    return [layer for layer in model.keras_model.layers if isinstance(layer, MCDropout)]


def _reload(folder, *, dropout, mc_num, batch_size):
    """The saved folder, as astroNN reads it back; dropout switched off before any prediction."""
    net = load_folder(folder)
    if not dropout:
        for layer in _dropout_layers(net):
            layer.disable_layer = True
    net.mc_num = mc_num
    net.batch_size = batch_size
    return net


def normalise(d, prefix):
    flux, _err = apogee_continuum(
        d[f"{prefix}flux"].astype(np.float64),
        d[f"{prefix}error"].astype(np.float64),
        bitmask=d[f"{prefix}bitmask"].astype(np.int64),
        dr=17,
    )
    return np.asarray(flux, np.float32)


def run(cls, labels, folder, d, out, key, targetname=None):
    epochs, batch, mc_num = int(d["epochs"]), int(d["batch_size"]), int(d["mc_num"])
    net = cls()
    if targetname is not None:
        net.targetname = targetname
    net.max_epochs = epochs
    net.batch_size = batch
    net.val_size = 0.1
    net.verbose = 0
    t0 = time.perf_counter()
    keep = out["train_keep"]
    net.train(out["train_flux"][keep], labels[keep].astype(np.float32))
    out[f"{key}_train_seconds"] = np.array(time.perf_counter() - t0)
    net.save(folder)
    print(
        f"{key}: trained {epochs} epochs in {out[f'{key}_train_seconds']:.1f} s, saved to {folder}",
        flush=True,
    )

    off = _reload(folder, dropout=False, mc_num=2, batch_size=batch)
    mean, sig = off.test(out["test_flux"])
    out[f"{key}_mean"], out[f"{key}_sigma"] = mean, sig["predictive"]
    out[f"{key}_sigma_model_dropout_off"] = sig["model"]
    out[f"{key}_raw_mean"] = mean

    on = _reload(folder, dropout=True, mc_num=mc_num, batch_size=batch)
    for i in (1, 2):
        # each test() traces anew: without a new global seed both runs would draw the same masks
        tf.random.set_seed(int(d["seed"]) + 1000 * i)
        m, s = on.test(out["test_flux"])
        out[f"{key}_mc{i}_mean"] = m
        out[f"{key}_mc{i}_total"] = s["total"]
        out[f"{key}_mc{i}_model"] = s["model"]
        out[f"{key}_mc{i}_predictive"] = s["predictive"]
    print(f"{key}: predictions done", flush=True)


def main(inp, workdir):
    d = dict(np.load(inp, allow_pickle=False))
    seed = int(d["seed"])
    np.random.seed(seed)
    tf.random.set_seed(seed)
    os.makedirs(workdir, exist_ok=True)
    out = {"train_flux": normalise(d, "raw_train_"), "test_flux": normalise(d, "raw_")}
    # apogee_continuum gives a few synthetic spectra a continuum near 0 somewhere (normalised flux
    # up to ~1e5), which turns astroNN's training loss into NaN: those are left out of training
    out["train_keep"] = np.max(np.abs(out["train_flux"]), axis=1) < MAX_TRAIN_FLUX
    print(
        f"training on {out['train_keep'].sum()} of {len(out['train_keep'])} spectra "
        f"(max normalised flux < {MAX_TRAIN_FLUX})",
        flush=True,
    )
    names = [str(t) for t in d["targetname_bcnn"]]
    run(ApogeeBCNN, d["train_labels_bcnn"], os.path.join(workdir, "bcnn"), d, out, "bcnn", names)
    run(ApogeeBCNNCensored, d["train_labels_censored"], os.path.join(workdir, "censored"), d, out, "censored")
    out["tf_version"], out["astronn_version"] = np.array(tf.__version__), np.array(astroNN.__version__)
    del out["train_flux"]  # the kept mask stays: train_keep
    np.savez(os.path.join(workdir, "astronn_out.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
