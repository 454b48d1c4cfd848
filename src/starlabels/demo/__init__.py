"""``starlabels demo``: the whole pipeline on a simulated survey, offline, in a few minutes.

:func:`run_demo` runs five steps and writes everything into one output folder:

1. **Simulate** a survey with known true labels (:mod:`starlabels.data.survey`): the built-in
   synthetic generator (:class:`~starlabels.data.survey.GeneratorSource`; a test/demo generator,
   not an atmosphere model) or, with ``emulator=PATH``, a Payne-format emulator, on the grid of
   ``instrument``: ``"apogee"`` (H band, the apStar grid) or ``"boss"`` (optical, the 4648-pixel
   BOSS coadd grid; BOSS-like SNR, SPPIXMASK defects, A/F dwarfs added to the population, labels
   :data:`BOSS_GENERATOR_LABELS`). Labels follow
   APOGEE-like giant/dwarf populations, spectra get a continuum, reddening, photon noise with an
   APOGEE-like SNR distribution, sky residuals and bad pixels; the training labels get Gaussian
   noise of known σ (their label errors). The first ``n_train`` stars are the training pool
   (split at random into train and dev), the last ``n_test`` are held out.
2. **Train** astroNN's Bayesian CNN (``bcnn``) with the robust loss (astroNN eq. 5) through
   :class:`starlabels.training.Trainer`: continuum normalisation
   (``PreprocessConfig(kind="continuum")`` with the generator's known continuum pixels, or pixels
   chosen from the training spectra by :func:`~starlabels.preprocess.continuum.select_continuum_pixels`
   for an emulator), early stopping and a plateau learning-rate schedule on the dev loss —
   computed with dropout on, as the network is used by MC-dropout prediction
   (``TrainingConfig(dev_mc_samples=1)``: with dropout off this network's output is far from the
   MC-dropout mean that :func:`starlabels.predict` reports — measured Teff σ_MAD 186 K against
   71 K on the same model). By default the built-in generator's stellar parameters and three
   α elements are learnt (:data:`GENERATOR_LABELS`), an emulator's labels all.
3. **Calibrate** the MC-dropout uncertainties on the dev set
   (:func:`starlabels.inference.calibration.calibrate`; the simulation knows the dev stars' true
   labels, so the scales are fitted against those).
4. **Predict** the held-out stars with calibrated MC-dropout uncertainties
   (:func:`starlabels.predict`, ``uncertainty="mc_dropout"``; ``n_samples`` passes, 50 by default
   instead of the library's 100, to fit the time budget).
5. **Write** into the output folder:

   ====================  ========================================================================
   ``model/``            the trained model folder (calibration included; ``starlabels.load_model``)
   ``catalog.fits``      the catalog of the held-out stars (``starlabels.inference.catalog``
                         columns; ``catalog.csv`` with ``catalog_format="csv"``)
   ``truth.csv``         their true labels (``APOGEE_ID``, ``GROUP``, ``SNR``, one column per label)
   ``kiel.png``          Kiel diagrams, true and predicted, coloured by [Fe/H]
   ``pred_vs_true.png``  predicted against true labels with residuals
   ``accuracy.md``       the accuracy table printed at the end
   ``summary.json``      sizes, settings, epochs, calibration scales, the table and timings
   ====================  ========================================================================

The accuracy table has, per label, the median and σ_MAD of the residuals (predicted − true) and the
width σ_MAD of the z-scores (predicted − true)/σ after calibration (1 for calibrated errors), all
from :mod:`starlabels.evaluation.metrics` applied to the written catalog and truth.

Everything is seeded: the same :class:`DemoConfig` gives the same catalog (on the same machine and
torch thread count).

The package's modules: :mod:`~starlabels.demo.config` (settings, sizes, labels),
:mod:`~starlabels.demo.steps` (source, simulation, preprocessing), :mod:`~starlabels.demo.run`
(:func:`run_demo`), :mod:`~starlabels.demo.accuracy` (the table), :mod:`~starlabels.demo.figures`;
their public names are re-exported here.
"""

from starlabels.demo.accuracy import accuracy_table, format_accuracy_table
from starlabels.demo.config import (
    BOSS_GENERATOR_LABELS,
    CATALOG_FORMATS,
    DEFAULT_OUTPUT,
    FIGURE_LABELS,
    GENERATOR_LABELS,
    MIN_DEV,
    QUICK,
    DemoConfig,
    DemoResult,
    with_sizes,
)
from starlabels.demo.run import run_demo

__all__ = [
    "BOSS_GENERATOR_LABELS",
    "CATALOG_FORMATS",
    "DEFAULT_OUTPUT",
    "FIGURE_LABELS",
    "GENERATOR_LABELS",
    "MIN_DEV",
    "QUICK",
    "DemoConfig",
    "DemoResult",
    "accuracy_table",
    "format_accuracy_table",
    "run_demo",
    "with_sizes",
]
