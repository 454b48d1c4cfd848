"""APOGEE Net's convolutional stage, layer by layer, and its first convolution before and after (issue 17).

    python bench/apogee_net_layers.py [--rounds 7] [--chunk 7]

One process, torch threads = 1, float32, glibc-default allocator (nothing tuned), random weights
(seed 0), raw-flux-like input ``1 + 0.05·N(0, 1)`` on the apStar grid (8575 px). Prints:

1. **The forward, former vs now**, interleaved rounds, this thread's CPU time, median and
   lowest: ``ApogeeNet.forward`` (batch 128, no gradients) with the chunked convolutional stage as
   it was — the first convolution by ``conv2d`` on the one-channel input, whose output comes back
   channels-*first* (the layout of a one-channel tensor is ambiguous), so the second convolution
   and the first max-pool receive channels-first memory — and as it is now
   (:func:`starlabels.models.apogee_net._first_conv`: a matrix product of each position's three taps,
   channels-last out). Also the largest output difference between the two and against the paper's
   Appendix-B module (``bench/reference``).
2. **Each layer of one chunk** (``--chunk`` spectra, 7 = the library's chunk on this grid), the
   input memory layout each layer receives in each version, ms and GFLOPS per layer (2·C_in·3·C_out·L),
   beside the fp32 sgemm peak (torch matmul 2048²) measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch.nn import functional

import machine  # bench/machine.py (this script's folder is on sys.path): the CPU's name

HERE = Path(__file__).resolve().parent
N_PIXELS = 8575
BATCH = 128


def former_first_conv(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """The first convolution as ``chunked_features`` ran it before: ``conv2d`` on the one-channel input
    (whose output comes back channels-first); patched in for ``apogee_net._first_conv``, the rest of
    the library's loop unchanged, to time the former path."""
    h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return functional.conv2d(h, conv.weight.unsqueeze(2), conv.bias, padding=(0, 1))


def _cpu_ms(fn: Any, repeat: int) -> float:
    c0 = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - c0) / repeat * 1e3


def forward_rounds(net: Any, x: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """ms of thread CPU time per forward of ``x``, former and now, interleaved over ``rounds``."""
    import starlabels.models.apogee_net as apogee_net

    def former() -> Any:
        with mock.patch.object(apogee_net, "_first_conv", former_first_conv):
            return net(x)

    steps = {"former first convolution": former, "now": lambda: net(x)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(_cpu_ms(fn, 2))
    return times


def _layout(h: torch.Tensor) -> str:
    if h.shape[1] > 1 and h.is_contiguous(memory_format=torch.channels_last):
        return "channels-last"
    return "channels-first" if h.is_contiguous() else "strided"


def _conv_ms(h: torch.Tensor, conv: torch.nn.Conv1d, rounds: int) -> float:
    """Best-of-``rounds`` CPU ms of one ``conv2d`` of ``h`` as ``chunked_features`` calls it."""
    w = conv.weight.unsqueeze(2)
    call = partial(functional.conv2d, h, w, conv.bias, padding=(0, 1))
    return min(_cpu_ms(call, 10) for _ in range(rounds))


def layer_table(convs: list[torch.nn.Conv1d], chunk: int, rounds: int) -> list[dict[str, Any]]:
    """Per layer of one chunk: the input layout and CPU ms of the convolution (the first one: of the
    matrix product now), former and now."""
    from starlabels.models.apogee_net import _first_conv, _pool_pairs

    x = 1 + 0.05 * torch.randn(chunk, 1, N_PIXELS)
    rows = []
    former = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    now = x
    length = N_PIXELS
    for i, conv in enumerate(convs):
        w = conv.weight.unsqueeze(2)
        if i == 0:
            t_now = min(_cpu_ms(partial(_first_conv, x, conv), 10) for _ in range(rounds))
            layout_now, layout_former = "(n, L, 3) taps", "(n, 1, 1, L)"
            now_out = _first_conv(x, conv)
        else:
            t_now, layout_now, layout_former = _conv_ms(now, conv, rounds), _layout(now), _layout(former)
            now_out = functional.conv2d(now, w, conv.bias, padding=(0, 1))
        mflop = 2 * conv.in_channels * 3 * conv.out_channels * length * chunk / 1e6
        rows.append({"layer": i + 1, "channels": f"{conv.in_channels}→{conv.out_channels}", "length": length,
                     "former_in": layout_former, "now_in": layout_now, "now_ms": t_now, "mflop": mflop,
                     "former_ms": _conv_ms(former, conv, rounds)})
        former = functional.conv2d(former, w, conv.bias, padding=(0, 1))
        if i % 2 == 1:
            former, now_out, length = _pool_pairs(former), _pool_pairs(now_out), length // 2
        former, now = former.relu_(), now_out.relu_()
    return rows


def sgemm_gflops(rounds: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / min(_cpu_ms(lambda: a @ b, 3) for _ in range(rounds)) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=7, help="spectra per chunk in the per-layer table")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    import predict_throughput as pt
    from throughput import forward_flops

    torch.manual_seed(0)
    paper, net = pt.apogee_pair()
    net = net.eval()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv1d)]
    x = 1 + 0.05 * torch.randn(BATCH, 1, N_PIXELS)
    with torch.no_grad():
        import starlabels.models.apogee_net as apogee_net

        with mock.patch.object(apogee_net, "_first_conv", former_first_conv):
            before = net(x)[0]
        after = net(x)[0]
        reference = paper(x)
        times = forward_rounds(net, x, a.rounds)
        peak = sgemm_gflops(a.rounds)
        rows = layer_table(convs, a.chunk, a.rounds)
    flops = forward_flops(net, x[:2]) / 2  # per spectrum, from the layer shapes (bench/throughput.py)
    import os

    print(f"APOGEE Net, batch {BATCH}, {N_PIXELS} px, float32, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, glibc-default allocator, {machine.describe()}, "
          f"load average {os.getloadavg()[0]:.1f}; thread CPU time, {a.rounds} interleaved rounds")
    f, n = statistics.median(times["former first convolution"]), statistics.median(times["now"])
    for name, v in times.items():
        med = statistics.median(v)
        print(f"  forward, {name}: median {med:.1f} ms (lowest {min(v):.1f}) = "
              f"{BATCH / med * 1e3:.0f} spectra/s = {BATCH * flops / med / 1e6:.1f} GFLOPS")
    paired = [b / c for b, c in zip(times["former first convolution"], times["now"], strict=True)]
    print(f"  now / former: {f / n:.2f}x faster (medians); paired per round median "
          f"{statistics.median(paired):.2f}x [{min(paired):.2f}, {max(paired):.2f}]")
    print(f"  largest |now − former| output {float((after - before).abs().max()):.1e}, "
          f"|now − paper| {float((after - reference).abs().max()):.1e} (standardised labels)")
    print(f"  fp32 sgemm peak (matmul 2048², this thread): {peak:.1f} GFLOPS; now = "
          f"{BATCH * flops / n / 1e6 / peak:.0%} of it")
    print(f"\nOne chunk of {a.chunk} spectra, each layer (best of {a.rounds}, CPU ms; GFLOPS):")
    print("| layer | channels | length | input, former | ms | GFLOPS | input, now | ms | GFLOPS |")
    print("|---:|---|---:|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['channels']} | {r['length']} | {r['former_in']} | {r['former_ms']:.3f} | "
              f"{r['mflop'] / r['former_ms']:.0f} | {r['now_in']} | {r['now_ms']:.3f} | "
              f"{r['mflop'] / r['now_ms']:.0f} |")
    total_former, total_now = sum(r["former_ms"] for r in rows), sum(r["now_ms"] for r in rows)
    print(f"| all | | | | {total_former:.2f} | | | {total_now:.2f} | |")
    print("(convolutions only; ReLU and max-pool passes not included)")


if __name__ == "__main__":
    main()
