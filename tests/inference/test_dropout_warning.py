"""predict(uncertainty=None) on a dropout-trained Bayesian network warns (MC mean is the estimate)."""

import warnings

import numpy as np
import pytest

import starlabels
from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.models import build_network
from starlabels.models.folder import TrainedModel


def _model(name, **kw):
    names = ["TEFF", "LOGG"]
    scaler = LabelScaler(names=names).fit(np.array([[4000.0, 1.0], [5000.0, 3.0]]))
    net = build_network(name, n_labels=2, n_pixels=256, **kw)
    return TrainedModel(net, label_names=names, label_scaler=scaler,
                        spectrum_scaler=SpectrumScaler("none"),
                        preprocessing=None)


def test_point_prediction_of_an_mc_dropout_network_warns():
    flux = np.random.default_rng(0).normal(1.0, 0.01, (3, 256)).astype(np.float32)
    with pytest.warns(UserWarning, match="mc_dropout"):  # an explicit point estimate
        starlabels.predict(_model("bcnn"), flux, preprocessed=True, uncertainty=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        starlabels.predict(_model("bcnn"), flux, np.full_like(flux, 0.01), preprocessed=True,
                           uncertainty="mc_dropout", n_samples=4)
        starlabels.predict(_model("apogee_net", dropout=0.1), flux, preprocessed=True)
