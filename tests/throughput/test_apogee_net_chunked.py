"""APOGEE Net's inference path (issue 17): without gradients on CPU the convolutions run on
cache-sized chunks of spectra, channels-last, with max-pool as a maximum of position pairs. The
outputs must equal the paper's Appendix-B code and the plain full-batch layers to float tolerance,
for any batch size, chunk size and input length."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import starlabels.models.apogee_net as apogee_net_module
from script_module import load_script
from starlabels.inference.fast_network import inference_network
from starlabels.models.apogee_net import ApogeeNet, chunked_features

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "reference" / "apogee_net_appendix_b.py"


def _paper_and_ours(seed: int = 1) -> tuple[torch.nn.Module, ApogeeNet]:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is absent")
    mod = load_script(REFERENCE, "apogee_net_appendix_b")
    torch.manual_seed(seed)
    ref = mod.APOGEE_Net(1, 3).eval()
    ours = ApogeeNet(3, 8575).eval()
    with torch.no_grad():
        for a, b in zip(ref.parameters(), ours.parameters(), strict=True):
            b.copy_(a)
    return ref, ours


@pytest.mark.parametrize("n", [1, 9, 17])  # 7 spectra per chunk on the apStar grid: 1, 2 and 3 chunks
def test_inference_equals_the_paper_code(monkeypatch, n):
    ref, ours = _paper_and_ours()
    x = torch.rand(n, 1, 8575) * 2000
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].shape[0])
        return chunked_features(*args, **kwargs)

    monkeypatch.setattr(apogee_net_module, "chunked_features", counted)
    # the dense layers' input too: a random network's outputs hardly depend on its features
    seen: dict[str, torch.Tensor] = {}
    first_dense = {"paper": next(m for m in ref.modules() if isinstance(m, torch.nn.Linear)),
                   "ours": ours.head[0]}
    for name, layer in first_dense.items():
        layer.register_forward_pre_hook(lambda _m, args, name=name: seen.setdefault(name, args[0]))
    with torch.no_grad():
        expected = ref(x)
        mean, log_var = ours(x)
        fast_mean, _ = inference_network(ours)(x)
    assert log_var is None
    assert n in calls  # the chunked path ran (also for the rewritten inference copy)
    assert seen["ours"].shape == seen["paper"].shape == (n, 64 * 133)
    scale = seen["paper"].abs().max().item()
    torch.testing.assert_close(seen["ours"], seen["paper"], rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(mean, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_mean, expected, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_pixels", [64, 129, 700, 4648])
@pytest.mark.parametrize("chunk_bytes", [1, 8 * 4 * 700 * 3, 1 << 30])
def test_chunked_features_equal_the_layers(n_pixels, chunk_bytes):
    """Odd lengths (each pool floors), one spectrum per chunk, a few, or the whole batch."""
    torch.manual_seed(2)
    net = ApogeeNet(2, n_pixels=n_pixels).eval()
    x = torch.randn(5, 1, n_pixels)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv1d)]
    with torch.no_grad():
        expected = net.features(x)
        got = chunked_features(convs, x, chunk_bytes=chunk_bytes)
    assert got.shape == expected.shape == (5, 64 * (n_pixels // 64))
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gradients_still_flow_through_the_layers():
    """With gradients on (training, the delta method) the plain layers run: input gradients exist
    and equal those of the paper's code."""
    ref, ours = _paper_and_ours()
    x = (torch.rand(2, 1, 8575) * 2000).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours(x)[0].sum().backward()
    ref(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-9)


def test_bf16_autocast_runs_the_chunked_path():
    _, ours = _paper_and_ours()
    x = 1 + 0.05 * torch.randn(9, 1, 8575)
    with torch.no_grad():
        full = ours(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ours(x)[0]
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: agreement to a few per cent of the output scale
    assert (low.float() - full).abs().max() < 0.05 * full.abs().max()


def test_every_convolution_after_the_first_gets_channels_last_input(monkeypatch):
    """conv2d on a one-channel input returns channels-first memory; the first convolution is a
    matrix product instead, so convolutions 2–12 all receive channels-last input (oneDNN's fast
    path; before, the first one's layout carried through the max-pools and all eleven ran
    channels-first: 1.40x the forward's time on a Xeon)."""
    torch.manual_seed(3)
    net = ApogeeNet(3).eval()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv1d)]
    layouts: list[tuple[int, bool]] = []
    real = apogee_net_module.functional.conv2d

    def recorded(h, *args, **kwargs):
        layouts.append((h.shape[1], h.is_contiguous(memory_format=torch.channels_last)))
        return real(h, *args, **kwargs)

    monkeypatch.setattr(apogee_net_module.functional, "conv2d", recorded)
    x = 1 + 0.05 * torch.randn(9, 1, 8575)  # two chunks of the apStar grid
    with torch.no_grad():
        chunked_features(convs, x)
    inputs = [(c, channels_last) for c, channels_last in layouts if c > 1]  # convolutions 2-12
    assert [c for c, _ in inputs] == list(apogee_net_module.CONV_CHANNELS[:-1]) * 2
    assert all(channels_last for _, channels_last in inputs)
