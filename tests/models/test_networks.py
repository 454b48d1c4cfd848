"""ApogeeNet and BayesianCNN: sizes, the paper's numerics, contract (tuple output, config, registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from script_module import load_script
from starlabels.errors import InputDataError
from starlabels.models import (
    ARCHITECTURES,
    ApogeeNet,
    BayesianCNN,
    CensoredBayesianCNN,
    build_network,
    mc_dropout,
    n_parameters,
)

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "reference" / "apogee_net_appendix_b.py"


def test_apogee_net_parameter_count_on_apstar_grid():
    # convs 32,424 + fc1 8512·512+512 + fc2 512·512+512 + fc3 512·3+3 = 4,655,275
    assert n_parameters(ApogeeNet(n_labels=3, n_pixels=8575)) == 4_655_275


def test_apogee_net_matches_paper_code_numerically():
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is absent")
    mod = load_script(REFERENCE, "apogee_net_appendix_b")
    torch.manual_seed(1)
    ref = mod.APOGEE_Net(1, 3).eval()
    ours = ApogeeNet(3, 8575).eval()
    ref_params, our_params = list(ref.parameters()), list(ours.parameters())
    assert [p.shape for p in ref_params] == [p.shape for p in our_params]
    with torch.no_grad():
        for a, b in zip(ref_params, our_params, strict=True):
            b.copy_(a)
    x = torch.rand(2, 1, 8575) * 2000
    mean, log_var = ours(x)
    assert log_var is None
    assert torch.equal(mean, ref(x))


def test_apogee_net_general_length_and_dropout_before_relu():
    net = ApogeeNet(4, n_pixels=700, dropout=0.5)
    assert net.head[0].in_features == 64 * (700 // 64)  # 700 → 350 → 175 → 87 → 43 → 21 → 10
    kinds = [type(m).__name__ for m in net.head]
    assert kinds == ["Linear", "Dropout", "ReLU", "Linear", "Dropout", "ReLU", "Linear"]
    mean, log_var = net(torch.randn(5, 1, 700))
    assert mean.shape == (5, 4) and log_var is None
    with pytest.raises(ValueError, match="n_pixels"):
        ApogeeNet(3, n_pixels=63)


def test_bcnn_structure_heads_and_mc_dropout():
    torch.manual_seed(0)
    net = BayesianCNN(n_labels=5, n_pixels=512)
    assert net.has_variance and net.name == "bcnn"
    # conv 1→2 (k=8): 18, conv 2→4: 68, pool 4 → 4·128 = 512 → 196 → 96, two heads 96 → 5
    expected = (1 * 2 * 8 + 2) + (2 * 4 * 8 + 4) + (512 * 196 + 196) + (196 * 96 + 96) + 2 * (96 * 5 + 5)
    assert n_parameters(net) == expected
    assert net.recommended_weight_decay == pytest.approx(1e-8)
    x = torch.randn(3, 1, 512)
    net.eval()
    mean, log_var = net(x)
    assert mean.shape == log_var.shape == (3, 5)
    assert torch.equal(net(x)[0], mean)  # deterministic in eval
    with mc_dropout(net):
        assert not torch.equal(net(x)[0], net(x)[0])


def test_bcnn_same_padding_matches_keras_convention():
    """Keras 'same' with an even kernel pads 3 left and 4 right; so does the trunk."""
    net = BayesianCNN(1, 64, dropout=0.0).eval()
    pad, conv = net.trunk[0], net.trunk[1]
    x = torch.randn(1, 1, 64)
    y = conv(pad(x))
    assert y.shape[-1] == 64
    expected = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (3, 4)), conv.weight, conv.bias)
    assert torch.equal(y, expected)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("apogee_net", {"n_labels": 2, "n_pixels": 256, "dropout": 0.1}),
        ("bcnn", {"n_labels": 3, "n_pixels": 256, "dropout": 0.2, "hidden": [32, 16]}),
    ],
)
def test_config_rebuilds_identical_network(name, kwargs):
    torch.manual_seed(0)
    net = build_network(name, **kwargs).eval()
    cfg = json.loads(json.dumps(net.config()))  # JSON-serialisable
    clone = build_network(net.name, **cfg).eval()
    clone.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, kwargs["n_pixels"])
    a, b = net(x), clone(x)
    assert torch.equal(a[0], b[0])
    assert (a[1] is None and b[1] is None) or torch.equal(a[1], b[1])


def test_registry_and_errors():
    assert {
        "apogee_net": ApogeeNet,
        "bcnn": BayesianCNN,
        "bcnn_censored": CensoredBayesianCNN,
    } == ARCHITECTURES
    assert isinstance(build_network("APOGEE-Net", n_labels=1, n_pixels=128), ApogeeNet)
    with pytest.raises(ValueError, match="known: "):
        build_network("resnet", n_labels=1)
    net = BayesianCNN(2, 128)
    with pytest.raises(InputDataError, match=r"\(N, 1, 128\)"):
        net(torch.randn(2, 128))
    with pytest.raises(InputDataError):
        net(torch.randn(2, 1, 127))
    net.apply_constraints()  # no constraints: a no-op that exists for the trainer


@pytest.mark.parametrize("n_pixels", [4648, 4647, 1001, 257])
def test_every_network_runs_on_any_length(n_pixels):
    """APOGEE Net, the BCNN and the censored BCNN on the BOSS grid's length and odd lengths: the
    dense input equals what the pooling leaves (floors: 64 · ⌊P/64⌋ for APOGEE Net's six pools of 2,
    4 · ⌊P/4⌋ for the BCNN's pool of 4), the forward pass gives (N, L), and a gradient reaches the
    input."""
    torch.manual_seed(0)
    x = torch.randn(3, 1, n_pixels, requires_grad=True)
    net = ApogeeNet(2, n_pixels=n_pixels)
    assert net.head[0].in_features == 64 * (n_pixels // 64)
    bcnn = BayesianCNN(2, n_pixels, hidden=[8, 4])
    dense = next(m for m in bcnn.trunk if isinstance(m, torch.nn.Linear))
    assert dense.in_features == 4 * (n_pixels // 4)
    windows = torch.zeros(2, n_pixels, dtype=torch.bool)
    windows[0, 5:40] = windows[1, n_pixels - 30:] = True  # a window touching the last pixel
    cens = CensoredBayesianCNN(windows, ["MG", "AL"], hidden=[8, 4], element_hidden=[4, 2])
    for model, n_out in ((net, 2), (bcnn, 2), (cens, 5)):
        mean, _ = model(x)
        assert mean.shape == (3, n_out)
        (grad,) = torch.autograd.grad(mean.sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_apogee_net_default_length_is_the_apogee_grid():
    from starlabels.instruments import get

    assert ApogeeNet(3).n_pixels == get("apogee").n_pixels
