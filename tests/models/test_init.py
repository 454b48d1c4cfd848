"""He initialisation: hidden layers at variance 2/fan_in with zero biases, output layers untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from starlabels.models import BayesianCNN, build_network
from starlabels.models.init import kaiming_init


def test_hidden_layers_get_he_weights_and_output_layers_keep_their_default():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 98, 256),
                        nn.ReLU(), nn.Linear(256, 3))
    out_w = net[5].weight.detach().clone()
    assert kaiming_init(net) is net
    assert torch.equal(net[5].weight, out_w)  # the last dense layer keeps its default init
    assert float(net[3].bias.detach().abs().max()) == 0.0
    assert float(net[3].weight.detach().std()) == pytest.approx((2 / (64 * 98)) ** 0.5, rel=0.05)
    bcnn = BayesianCNN(n_labels=3, n_pixels=64, hidden=(16, 8))
    heads = [bcnn.mean_head.weight.detach().clone(), bcnn.log_var_head.weight.detach().clone()]
    kaiming_init(bcnn)  # both heads have n_labels outputs: both kept
    assert torch.equal(bcnn.mean_head.weight, heads[0]) and torch.equal(bcnn.log_var_head.weight, heads[1])
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in bcnn.trunk if isinstance(m, nn.Linear))


def test_he_init_keeps_apogee_nets_outputs_varying_between_inputs():
    """Why it exists: with torch's default init APOGEE Net's twelve ReLU convolutions all but
    erase the input; with He init different spectra give clearly different outputs."""
    x = torch.randn(16, 1, 512)
    spreads = {}
    for init in ("default", "kaiming"):
        torch.manual_seed(1)
        net = build_network("apogee_net", n_labels=3, n_pixels=512).eval()
        if init == "kaiming":
            kaiming_init(net)
        with torch.no_grad():
            spreads[init] = float(net(x)[0].std(dim=0).mean())
    assert spreads["kaiming"] > 100 * spreads["default"]
