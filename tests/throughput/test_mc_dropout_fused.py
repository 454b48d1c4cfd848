"""The fused MC-dropout passes of the BayesianCNN (issue 17): same network function, exact
dropout statistics (rate, independence across elements, passes and stars), seeded reproducibility,
and the same MC moments as the generic repeated-input path."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch.nn import functional

import starlabels.models.bcnn as bcnn_module
from starlabels.inference.uncertainty import PhysicalNetwork, mc_dropout
from starlabels.models.bcnn import BayesianCNN, mc_dropout_passes
from starlabels.models.layers import mc_dropout as dropout_on


def _net(p: float, n_pixels: int = 203, seed: int = 0) -> BayesianCNN:
    torch.manual_seed(seed)
    return BayesianCNN(3, n_pixels, dropout=p, hidden=(16, 8)).eval()


def test_without_dropout_equals_the_plain_forward():
    net = _net(0.0)
    x = torch.randn(5, 1, 203)
    mean, log_var = mc_dropout_passes(net, x, 3)
    ref_mean, ref_log_var = net(x)
    torch.testing.assert_close(mean.view(5, 3, 3), ref_mean.detach().unsqueeze(1).expand(5, 3, 3))
    torch.testing.assert_close(log_var.view(5, 3, 3), ref_log_var.detach().unsqueeze(1).expand(5, 3, 3))


def _recorded_masks(monkeypatch, p: float, n_stars: int, n_samples: int, n_pixels: int = 400):
    """The 0/1 masks of the first two dropout layers, read from the inputs of conv2 and fc1 of a
    network whose activations before those dropouts are exactly 1 (zero weights, bias 1)."""
    net = _net(p, n_pixels)
    monkeypatch.setattr(bcnn_module, "CHUNK_BYTES", 1 << 20)  # 163 passes of 400 px per chunk
    with torch.no_grad():
        for conv in (net.trunk[1], net.trunk[5]):
            conv.weight.zero_()
            conv.bias.fill_(1.0)
    seen: dict[str, torch.Tensor] = {}
    conv_inputs: list[torch.Tensor] = []  # one per chunk of passes

    def conv2d(inp, *args, **kwargs):
        conv_inputs.append(inp.detach().clone())
        return functional.conv2d(inp, *args, **kwargs)

    def linear(inp, *args, **kwargs):
        seen.setdefault("linear", inp.detach().clone())
        return functional.linear(inp, *args, **kwargs)

    monkeypatch.setattr(bcnn_module, "functional", types.SimpleNamespace(conv2d=conv2d, linear=linear))
    mc_dropout_passes(net, torch.randn(n_stars, 1, n_pixels), n_samples,
                      torch.Generator().manual_seed(5))
    left = net.trunk[4].padding[0]
    first = torch.cat(conv_inputs)[:, :, 0, left:left + n_pixels]  # (rows, f1, P), values 0 or 1
    assert first.shape[0] == n_stars * n_samples and len(conv_inputs) > 1  # several chunks
    second = seen["linear"]  # (rows, f2 · P//4), values 0 or 1
    return first.reshape(n_stars, n_samples, -1).numpy(), second.reshape(n_stars, n_samples, -1).numpy()


@pytest.mark.parametrize(("p", "n_stars", "n_samples"), [(0.3, 6, 50), (0.5, 6, 50), (0.3, 2, 200)])
def test_dropout_rate_and_independence(monkeypatch, p, n_stars, n_samples):
    # 6 × 50: several stars per chunk of passes; 2 × 200: a star's passes split over two chunks
    # (CHUNK_BYTES = 2²⁰ here: 2²⁰ // (16 · 400 px) = 163 passes per chunk)
    for masks in _recorded_masks(monkeypatch, p, n_stars, n_samples):
        assert set(np.unique(masks)) <= {0.0, 1.0}
        kept = masks.mean()
        n = masks.size
        assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # rate, 5 standard errors
        flat = masks.reshape(n_stars * n_samples, -1)
        # no mask reused across passes or stars: every pair of rows differs
        assert len({row.tobytes() for row in flat}) == flat.shape[0]
        # independence: the correlation between two rows (other pass of the same star, same pass
        # of another star) and between neighbouring elements is ~N(0, 1/m)
        centred = flat - flat.mean()
        m = flat.shape[1]
        corr_rows = (centred @ centred.T) / np.outer(np.linalg.norm(centred, axis=1),
                                                     np.linalg.norm(centred, axis=1))
        off = corr_rows[~np.eye(len(flat), dtype=bool)]
        assert abs(off.mean()) < 5 / np.sqrt(m * len(off))
        assert np.abs(off).max() < 6 / np.sqrt(m)
        neighbours = (centred[:, 1:] * centred[:, :-1]).mean() / centred.var()
        assert abs(neighbours) < 5 / np.sqrt(centred[:, 1:].size)


def test_seeded_reproducibility():
    net = _net(0.3)
    fn = PhysicalNetwork(net, torch.zeros(203), torch.ones(203), torch.zeros(3), torch.ones(3))
    flux = torch.randn(4, 203)
    a = mc_dropout(fn, flux, n_samples=20, seed=11)
    b = mc_dropout(fn, flux, n_samples=20, seed=11)
    c = mc_dropout(fn, flux, n_samples=20, seed=12)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(mc_dropout(fn, flux, n_samples=20, generator=g1)[0],
                               mc_dropout(fn, flux, n_samples=20, generator=g2)[0], rtol=0, atol=0)


def test_same_moments_as_the_repeated_input_passes():
    """Fused vs the generic path (repeated input, dropout layers in train mode) with many passes:
    means within 5 standard errors, epistemic variances within 15 % (2000 passes: ±6 % sd)."""
    net = _net(0.3)
    fn = PhysicalNetwork(net, torch.zeros(203), torch.ones(203), torch.zeros(3), torch.ones(3))
    flux = torch.randn(3, 203)
    fused_mean, fused = mc_dropout(fn, flux, n_samples=2000, batch_size=4000, seed=1)
    generic_mean, generic = mc_dropout(fn, flux, n_samples=2000, batch_size=4000, seed=1,
                                       dropout_context=dropout_on)
    se = torch.sqrt(2 * generic["epistemic"] / 2000)
    assert torch.all((fused_mean - generic_mean).abs() <= 5 * se)
    ratio = fused["epistemic"] / generic["epistemic"]
    assert torch.all((ratio > 0.85) & (ratio < 1.15)), ratio
    ratio = fused["aleatoric"] / generic["aleatoric"]
    assert torch.all((ratio > 0.9) & (ratio < 1.1)), ratio


def test_keep_threshold_arithmetic():
    # keep = round((1 - p)·2¹⁶)/2¹⁶, kept when a signed 16-bit draw r < count − 2¹⁵
    assert bcnn_module.dropout_keep_threshold(0.3) == (45875 - 32768, 45875 / 65536)
    assert bcnn_module.dropout_keep_threshold(0.5) == (0, 0.5)
    assert bcnn_module.dropout_keep_threshold(0.0) == (None, 1.0)
    assert bcnn_module.dropout_keep_threshold(1e-6) == (None, 1.0)  # < 2⁻¹⁷: nothing dropped
    assert bcnn_module.dropout_keep_threshold(1 - 2**-16) == (1 - 32768, 1 / 65536)
    with pytest.raises(ValueError, match="keeps fewer than 1"):
        bcnn_module.dropout_keep_threshold(1 - 2**-18)
    ones = bcnn_module.keep_mask(torch.empty(5), None, None)
    assert torch.equal(ones, torch.ones(5))


@pytest.mark.parametrize("p", [0.3, 0.05, 0.77])
def test_keep_mask_rate_and_word_independence(p):
    """keep_mask: the rate is the realised keep exactly (binomial test), and the four 16-bit
    draws cut from one 64-bit word, as well as draws of neighbouring words, are independent:
    the 16 patterns of each aligned 4-tuple (one word) and of the tuples straddling two words
    follow the product of Bernoulli(keep) probabilities (χ² test, 15 degrees of freedom)."""
    threshold, keep = bcnn_module.dropout_keep_threshold(p)
    mask = bcnn_module.keep_mask(torch.empty(400_000), threshold, torch.Generator().manual_seed(3))
    m = mask.numpy()
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert abs(m.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / m.size)
    weights = np.array([8, 4, 2, 1])
    n_ones = np.array([bin(k).count("1") for k in range(16)])
    expected_p = keep**n_ones * (1 - keep) ** (4 - n_ones)
    for tuples in (m.reshape(-1, 4), m[2:-2].reshape(-1, 4)):  # within a word, across two words
        counts = np.bincount(tuples.astype(int) @ weights, minlength=16)
        expected = expected_p * len(tuples)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 44.0  # χ²₁₅ 99.99th percentile ≈ 44.3


def test_fused_passes_equal_the_plain_layers_with_the_same_masks(monkeypatch):
    """With the masks the fused path drew (recorded), the plain modules of the network — conv,
    ReLU, max-pool, flatten, dense — with inverted dropout (mask / realised keep) give the same
    outputs: the fusion changes the arithmetic's order only."""
    p, n_stars, n_samples, n_pixels = 0.3, 3, 7, 203
    net = _net(p, n_pixels)
    drawn: list[torch.Tensor] = []
    real_keep_mask = bcnn_module.keep_mask

    def recording(out, threshold, generator=None, draws=None):
        drawn.append(real_keep_mask(out, threshold, generator, draws).clone())
        return out

    monkeypatch.setattr(bcnn_module, "keep_mask", recording)
    x = torch.randn(n_stars, 1, n_pixels)
    mean, log_var = mc_dropout_passes(net, x, n_samples, torch.Generator().manual_seed(8))
    # 3 stars × 7 passes fit one chunk: draws are [conv-input mask, fc1-input mask, fc2-input mask]
    assert len(drawn) == 3
    rows = n_stars * n_samples
    _, keep = bcnn_module.dropout_keep_threshold(p)
    trunk = net.trunk
    with torch.no_grad():
        h = torch.relu(trunk[1](trunk[0](x))).repeat_interleave(n_samples, dim=0)  # (rows, f1, P)
        h = h * drawn[0].view(rows, n_pixels, -1).transpose(1, 2) / keep
        h = trunk[7](torch.relu(trunk[5](trunk[4](h))))  # conv2, ReLU, max-pool (rows, f2, P//4)
        # the fused path's features are position-major (j·f2 + c); Flatten's are channel-major
        mask2 = drawn[1].view(rows, h.shape[2], h.shape[1]).transpose(1, 2)
        h = trunk[8](h * mask2 / keep)  # flatten
        h = torch.relu(trunk[10](h)) * drawn[2].view(rows, -1) / keep
        h = torch.relu(trunk[13](h))
        ref_mean, ref_log_var = net.mean_head(h), net.log_var_head(h)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_var, ref_log_var, rtol=1e-5, atol=1e-5)


def test_changed_weights_are_used():
    """The first dense layer's permuted weights are memoised per layer: an in-place change of the
    weights (an optimiser step, load_state_dict) must reach the next call."""
    net = _net(0.0)
    x = torch.randn(2, 1, 203)
    mc_dropout_passes(net, x, 2)
    with torch.no_grad():
        net.trunk[10].weight.mul_(-2.0)
    mean, _ = mc_dropout_passes(net, x, 2)
    torch.testing.assert_close(mean.view(2, 2, 3)[:, 0], net(x)[0].detach())


def test_a_stars_masks_do_not_depend_on_chunks_or_batch_company(monkeypatch):
    """Each star's draws are one fixed block of the generator's stream: the same seed gives the same
    passes whether the star shares a call with others or not, and whatever the chunk size."""
    net = _net(0.3)
    x = torch.randn(3, 1, 203)

    def passes(*batches, chunk_bytes=bcnn_module.CHUNK_BYTES):
        monkeypatch.setattr(bcnn_module, "CHUNK_BYTES", chunk_bytes)
        gen = torch.Generator().manual_seed(21)
        return torch.cat([mc_dropout_passes(net, x[sl], 5, gen)[0] for sl in batches])

    together = passes(slice(0, 3))
    torch.testing.assert_close(passes(slice(0, 1), slice(1, 3)), together, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(passes(slice(0, 3), chunk_bytes=1), together, rtol=1e-6, atol=1e-6)
    other_seed = mc_dropout_passes(net, x, 5, torch.Generator().manual_seed(22))[0]
    assert not torch.allclose(other_seed, together)
