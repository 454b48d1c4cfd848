"""CensoredBayesianCNN's ``output_order`` (added for astroNN imports): a pure column permutation,
and the default (None) leaves outputs and config exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starlabels.errors import InputDataError
from starlabels.models import CensoredBayesianCNN, build_network

P = 128


def _net(**kw) -> CensoredBayesianCNN:
    w = np.zeros((2, P), dtype=bool)
    w[0, 10:30] = True
    w[1, 60:75] = True
    torch.manual_seed(0)
    return CensoredBayesianCNN(w, ["MG", "AL"], dropout=0.2, hidden=[16, 8], element_hidden=[4, 2], **kw)


def test_default_is_unchanged():
    net = _net().eval()
    assert net.output_order is None
    assert "output_order" not in net.config()
    x = torch.randn(3, 1, P)
    mean, log_var = net(x)
    main_mean, main_log_var, h = net.main_forward(x)
    el_mean, el_log_var = net.element_forward(x, net.bridge(h, main_mean))
    assert torch.equal(mean, torch.cat([main_mean, el_mean], 1))
    assert torch.equal(log_var, torch.cat([main_log_var, el_log_var], 1))


def test_output_order_permutes_columns_and_round_trips():
    order = [0, 1, 3, 2, 4]  # main label 2 after the first element
    plain, permuted = _net().eval(), _net(output_order=order).eval()
    permuted.load_state_dict(plain.state_dict())
    x = torch.randn(3, 1, P)
    (m0, v0), (m1, v1) = plain(x), permuted(x)
    assert torch.equal(m1, m0[:, order]) and torch.equal(v1, v0[:, order])
    rebuilt = build_network("bcnn_censored", **permuted.config()).eval()
    rebuilt.load_state_dict(permuted.state_dict())
    assert torch.equal(rebuilt(x)[0], m1)


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [0, 0, 1, 2, 3], [0, 1, 2, 3, 5]])
def test_bad_output_order(order):
    with pytest.raises(InputDataError, match="permutation"):
        _net(output_order=order)
