"""Batched uncertainty methods: MC dropout (astroNN eq. 3), noise realisations, delta method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from starlabels.errors import InputDataError, StarlabelsError
from starlabels.inference import uncertainty as uncertainty_methods
from starlabels.preprocess.masking import BAD_PIXEL_ERROR


def physical(net, P, L, in_offset=None, in_slope=None, out_offset=None, out_slope=None):
    return uncertainty_methods.PhysicalNetwork(
        net,
        torch.zeros(P) if in_offset is None else in_offset,
        torch.ones(P) if in_slope is None else in_slope,
        torch.zeros(L) if out_offset is None else out_offset,
        torch.ones(L) if out_slope is None else out_slope,
    )


def test_delta_method_is_exact_for_a_linear_network_through_both_scalers(nets):
    torch.manual_seed(0)
    P, L, N = 40, 2, 5
    W = torch.randn(L, P)
    in_slope, in_offset = torch.rand(P) + 0.5, torch.randn(P)
    out_slope, out_offset = torch.tensor([500.0, 0.3]), torch.tensor([5000.0, 0.0])
    fn = physical(nets.Linear(W, log_var=math.log(0.25)), P, L, in_offset, in_slope, out_offset, out_slope)
    flux = 1 + 0.1 * torch.randn(N, P)
    err = 0.01 + 0.02 * torch.rand(N, P)
    mean, parts = uncertainty_methods.delta_method(fn, flux, err, error_cap=None)
    # y_phys = out_offset + out_slope * (W (in_offset + in_slope * x) + b)  →  ∂y_k/∂x_i = s_k W_ki a_i
    J = out_slope[:, None] * W * in_slope[None, :]  # (L, P)
    expected = (J.unsqueeze(0) ** 2 * err.unsqueeze(1) ** 2).sum(-1)  # (N, L)
    torch.testing.assert_close(parts["delta"], expected, rtol=1e-4, atol=0)
    torch.testing.assert_close(parts["aleatoric"], (0.25 * out_slope**2).expand(N, L))
    torch.testing.assert_close(mean, fn(flux)[0].detach())


def test_delta_agrees_with_100_noise_realisations_within_15_percent_at_high_snr(nets):
    torch.manual_seed(1)
    P, L, N = 128, 3, 60
    fn = physical(nets.Smooth(P, L, seed=3), P, L, out_offset=torch.tensor([5000.0, 3.0, 0.0]),
                  out_slope=torch.tensor([800.0, 1.0, 0.4]))
    flux = 1 + 0.2 * torch.randn(N, P)
    for snr in (50.0, 200.0):
        err = torch.full((N, P), 1 / snr)
        err[:, :8] = BAD_PIXEL_ERROR  # masked pixels must not matter
        _, pd = uncertainty_methods.delta_method(fn, flux, err)
        _, pn = uncertainty_methods.noise_realisations(fn, flux, err, n_samples=100, seed=7)
        ratio = (pd["delta"] / pn["noise"]).sqrt()
        assert torch.isfinite(ratio).all()
        # 100 realisations measure σ to ~7 %, so compare the bulk, not single stars
        assert (ratio.median(dim=0).values - 1).abs().max() < 0.05, (snr, ratio.median(dim=0).values)
        assert ((ratio - 1).abs() < 0.15).float().mean() > 0.9


def test_masked_pixels_with_huge_errors_are_zero_weighted(nets):
    torch.manual_seed(2)
    P, L, N = 30, 1, 4
    W = torch.randn(L, P)
    fn = physical(nets.Linear(W), P, L)
    flux = torch.ones(N, P)
    err = torch.full((N, P), 0.01)
    err_masked = err.clone()
    err_masked[:, 5:10] = BAD_PIXEL_ERROR
    err_masked[:, 12] = float("inf")
    err_masked[:, 13] = float("nan")
    _, pd = uncertainty_methods.delta_method(fn, flux, err_masked)
    keep = torch.ones(P, dtype=torch.bool)
    keep[5:10] = False
    keep[12:14] = False
    expected = ((W[0, keep] * 0.01) ** 2).sum()
    torch.testing.assert_close(pd["delta"][:, 0], expected.expand(N), rtol=1e-4, atol=0)
    _, pn = uncertainty_methods.noise_realisations(fn, flux, err_masked, n_samples=400, seed=0)
    assert torch.isfinite(pn["noise"]).all()
    np.testing.assert_allclose(pn["noise"][:, 0].sqrt().numpy(), expected.sqrt().item(), rtol=0.12)


def test_noise_errors_are_capped_at_five_times_the_mean_error(nets):
    P, N = 50, 3
    W = torch.zeros(1, P)
    W[0, 7] = 1.0  # the output is pixel 7 alone
    fn = physical(nets.Linear(W), P, 1)
    err = torch.full((N, P), 0.01)
    err[:, 7] = 10.0  # 1000× the others, but a measured (not masked) pixel
    sigma = uncertainty_methods.effective_errors(err)
    cap = 5 * err.mean(dim=1)  # the mean includes the big error itself, as "mean in the spectrum"
    torch.testing.assert_close(sigma[:, 7], cap)
    _, pn = uncertainty_methods.noise_realisations(fn, torch.ones(N, P), err, n_samples=2000, seed=1)
    np.testing.assert_allclose(pn["noise"][:, 0].sqrt().numpy(), cap.numpy(), rtol=0.06)
    _, pd = uncertainty_methods.delta_method(fn, torch.ones(N, P), err)
    torch.testing.assert_close(pd["delta"][:, 0], cap**2, rtol=1e-5, atol=0)
    _, uncapped = uncertainty_methods.delta_method(fn, torch.ones(N, P), err, error_cap=None)
    torch.testing.assert_close(uncapped["delta"][:, 0], torch.full((N,), 100.0))


def test_mc_dropout_total_is_variance_of_means_plus_mean_variance(nets):
    torch.manual_seed(3)
    P, L, N, p = 20, 2, 3, 0.3
    w = torch.randn(L, P)
    fn = physical(nets.DropoutLinear(w, p, log_var=math.log(0.04)), P, L,
                  out_slope=torch.tensor([2.0, 3.0]))
    x = 1 + torch.rand(N, P)
    mean, parts = uncertainty_methods.mc_dropout(fn, x, n_samples=4000, batch_size=4000, seed=5)
    # inverted dropout: E[y] = w·x; Var = Σ w_i² x_i² p/(1-p); times the label scale
    s = torch.tensor([2.0, 3.0])
    exp_mean = (x @ w.T) * s
    exp_var = (x.unsqueeze(1) ** 2 * w.unsqueeze(0) ** 2).sum(-1) * p / (1 - p) * s**2
    rel_se = exp_var.sqrt() / math.sqrt(4000)
    assert ((mean - exp_mean).abs() < 5 * rel_se).all()
    np.testing.assert_allclose(parts["epistemic"].numpy(), exp_var.numpy(), rtol=0.1)
    torch.testing.assert_close(parts["aleatoric"], (0.04 * s**2).expand(N, L))
    total = uncertainty_methods.total_variance(parts)
    torch.testing.assert_close(total, parts["epistemic"] + parts["aleatoric"])
    # reproducible with a seed, different without the same seed; the module is left as it was
    again, _ = uncertainty_methods.mc_dropout(fn, x, n_samples=50, seed=5)
    again2, _ = uncertainty_methods.mc_dropout(fn, x, n_samples=50, seed=5)
    other, _ = uncertainty_methods.mc_dropout(fn, x, n_samples=50, seed=6)
    torch.testing.assert_close(again, again2)
    assert not torch.equal(again, other)
    assert fn.training


def test_mc_dropout_refuses_a_network_without_dropout(nets):
    fn = physical(nets.Linear(torch.ones(1, 8)), 8, 1)
    with pytest.raises(StarlabelsError, match="dropout"):
        uncertainty_methods.mc_dropout(fn, torch.ones(2, 8), n_samples=10)


def test_realisations_ride_in_the_batch_dimension(nets):
    P, L, N, S = 16, 2, 10, 25
    counting = nets.Counting(nets.DropoutLinear(torch.randn(L, P), 0.2))
    fn = physical(counting, P, L)
    x = torch.ones(N, P)
    uncertainty_methods.noise_realisations(fn, x, torch.full((N, P), 0.1), n_samples=S, batch_size=100,
                                           seed=0)
    # 100 rows per pass = 4 spectra × 25 realisations → ceil(10 / 4) = 3 calls, no per-spectrum loop
    assert counting.calls == [100, 100, 50]
    counting.calls.clear()
    uncertainty_methods.mc_dropout(fn, x, n_samples=S, batch_size=1000, seed=0)
    assert counting.calls == [N * S]
    counting.calls.clear()
    uncertainty_methods.delta_method(fn, x, torch.full((N, P), 0.1), batch_size=64)
    assert counting.calls == [N]


def test_noise_needs_two_realisations_and_the_scatter_is_seeded(nets):
    fn = physical(nets.Smooth(32, 2), 32, 2)
    x, e = torch.ones(3, 32), torch.full((3, 32), 0.05)
    with pytest.raises(InputDataError):
        uncertainty_methods.noise_realisations(fn, x, e, n_samples=1)
    a = uncertainty_methods.noise_realisations(fn, x, e, n_samples=20, seed=9)[1]["noise"]
    b = uncertainty_methods.noise_realisations(fn, x, e, n_samples=20, seed=9)[1]["noise"]
    c = uncertainty_methods.noise_realisations(fn, x, e, n_samples=20, seed=10)[1]["noise"]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_effective_errors_of_a_fully_masked_spectrum_are_zero():
    e = torch.full((2, 10), BAD_PIXEL_ERROR)
    e[1] = 0.1
    s = uncertainty_methods.effective_errors(e)
    assert torch.equal(s[0], torch.zeros(10))
    torch.testing.assert_close(s[1], torch.full((10,), 0.1))


def test_a_point_prediction_runs_in_eval_mode_and_leaves_each_submodule_as_it_was():
    class Probe(torch.nn.Module):  # records the training flag of itself and its dropout during forward
        def __init__(self):
            super().__init__()
            self.dropout = torch.nn.Dropout(0.5)
            self.seen: list[tuple[bool, bool]] = []

        def forward(self, x):
            self.seen.append((self.training, self.dropout.training))
            return self.dropout(x)[:, 0, :2]  # (N, 1, P) in

    net = Probe()
    fn = physical(net, 4, 2)
    net.dropout.eval()  # a frozen submodule inside a module in training mode
    assert fn.training and net.training
    x = torch.ones(3, 4)
    mean, _ = uncertainty_methods.point(fn, x)
    assert net.seen == [(False, False)]
    torch.testing.assert_close(mean, x[:, :2])  # dropout off: the input as it came
    # each module as before: the dropout stays frozen (the former eval()/train(was) set it training)
    assert fn.training and net.training and not net.dropout.training
    fn.eval()
    uncertainty_methods.point(fn, x)
    assert not any(m.training for m in fn.modules())


def test_on_device_moves_only_a_module_that_is_elsewhere(monkeypatch):
    from starlabels.utils import on_device

    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    walks = []
    real = torch.nn.Module._apply
    monkeypatch.setattr(torch.nn.Module, "_apply",
                        lambda self, *a, **k: walks.append(self) or real(self, *a, **k))
    assert on_device(module, "cpu") is module and walks == []  # everything on the CPU already
    assert on_device(module, torch.device("meta")) is module and walks  # moved, in place
    assert all(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()])


def test_a_point_prediction_runs_a_frozen_torchscript_network():
    # torch.jit.freeze keeps no training flag on the submodules; eval mode must not need one
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2), torch.nn.Dropout(0.5))
    x = torch.randn(3, 4)
    frozen = torch.jit.freeze(torch.jit.trace(net.eval(), x[:, None, :], check_trace=False))
    mean, parts = uncertainty_methods.point(physical(frozen, 4, 2), x)
    torch.testing.assert_close(mean, net(x[:, None, :]))
    assert parts == {}
