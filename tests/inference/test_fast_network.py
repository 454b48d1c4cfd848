"""The fast inference copy of a network (starlabels.inference.fast_network): numerically identical
to the trained network, with the rewrites it promises; FastGradConv1d's gradients equal autograd's."""

from __future__ import annotations

import itertools

import pytest
import torch

from starlabels.inference.fast_network import FastGradConv1d, inference_network


def test_inference_network_is_identical_and_swaps_relu_and_pool(make_model):
    for arch in ("apogee_net", "bcnn"):
        m = make_model(arch, 512, dropout=0.1)
        fast = inference_network(m.network)
        assert fast is not m.network
        x = torch.randn(5, 1, 512)
        with torch.inference_mode():
            a, b = m.network(x), fast(x)
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
        mods = list(fast.modules())
        assert any(
            isinstance(a, torch.nn.MaxPool1d) and isinstance(b, torch.nn.ReLU)
            for a, b in itertools.pairwise(mods)
        )
        assert all(mod.inplace for mod in mods if isinstance(mod, torch.nn.ReLU))
        assert all(isinstance(mod, FastGradConv1d) for mod in mods if isinstance(mod, torch.nn.Conv1d))
        assert not any(p.requires_grad for p in fast.parameters())
        # the model's own network is untouched
        assert not any(mod.inplace for mod in m.network.modules() if isinstance(mod, torch.nn.ReLU))
        assert all(p.requires_grad for p in m.network.parameters())


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "pad"), [(1, 8, 3, 1), (8, 16, 3, 1), (2, 4, 8, 0), (3, 5, 5, 4)]
)
def test_fast_grad_conv_gradients_equal_autograd(c_in, c_out, k, pad):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(c_in, c_out, k, padding=pad)
    assert FastGradConv1d.supports(conv)
    fast = FastGradConv1d.from_conv(conv)
    x = torch.randn(4, c_in, 50, requires_grad=True)
    g = torch.randn_like(conv(x))
    ref = torch.autograd.grad(conv(x), [x, conv.weight, conv.bias], g)
    got = torch.autograd.grad(fast(x), [x, fast.weight, fast.bias], g)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for method in FastGradConv1d.METHODS:  # every kernel, not only the one the rule picks
        torch.testing.assert_close(
            fast.input_grad(g, x.detach(), fast.weight.detach(), method), ref[0], rtol=1e-4, atol=1e-5
        )
    assert not FastGradConv1d.supports(torch.nn.Conv1d(2, 2, 3, stride=2))
