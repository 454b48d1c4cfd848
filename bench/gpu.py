"""GPU throughput (issue 17): spectra/s per network and MC-dropout cost per star on one CUDA device.

    python bench/gpu.py [--seconds 2] [--json PATH]

For APOGEE Net (8575 px) and the demo BayesianCNN (7514 px), at batch 512, 1024, 2048 and 4096:
spectra/s of the inference forward pass in float32 and under ``torch.autocast`` with bfloat16 and
float16 (same input, same device, measured side by side in one run, synchronised with the device,
each timing ~``--seconds``), plus the BayesianCNN's MC-dropout cost (100 passes, fused path) in ms
per star against astroNN's published ≈ 3 ms per star (Leung & Bovy 2019, 4.4-TFLOPS GPU), and the
change of the labels under autocast in units of their MC σ. Runs in well under 5 minutes.
Without a CUDA device it says so and exits 0 — it never guesses numbers.

``--device cpu`` with small ``--batches``, ``--stars`` and ``--shift-passes`` runs the same code on
the CPU (the test suite does so, so that the script is known to run before a GPU is at hand; CPU
figures are measured elsewhere: bench/throughput.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from starlabels.inference.uncertainty import PhysicalNetwork, mc_dropout
from starlabels.models.apogee_net import ApogeeNet
from starlabels.models.bcnn import BayesianCNN

BATCHES = (512, 1024, 2048, 4096)
DTYPES = {"float32": None, "bf16 autocast": torch.bfloat16, "fp16 autocast": torch.float16}
ASTRONN_MS_PER_STAR = 3.0
MC_PASSES = 100


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, batch: int, seconds: float, device: torch.device) -> float:
    """Spectra/s of ``fn`` (one call = ``batch`` spectra): after one warm-up call, as many calls as fit in
    ``seconds`` (at least one), the device synchronised before the clock starts and before it stops."""
    fn()
    _synchronize(device)
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    _synchronize(device)
    return n * batch / (time.perf_counter() - t0)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def forward_rates(seconds: float, device: torch.device, batches: tuple[int, ...] = BATCHES) -> dict:
    """``{"<network>|<batch>|<dtype label>": spectra/s}`` of the inference forward pass."""
    nets = {"apogee_net": ApogeeNet(3, 8575), "bcnn": BayesianCNN(3, 7514)}
    out: dict = {}
    for name, net in nets.items():
        net = net.to(device).eval()
        for batch in batches:
            x = torch.randn(batch, 1, net.n_pixels, device=device)
            for label, dtype in DTYPES.items():
                def step(net=net, x=x, dtype=dtype):
                    with torch.inference_mode(), _autocast(device, dtype):
                        return net(x)
                out[f"{name}|{batch}|{label}"] = _rate(step, batch, seconds, device)
    return out


def mc_cost(seconds: float, device: torch.device, stars: int = 256, shift_passes: int = 2000) -> dict:
    """MC dropout of the demo-sized BayesianCNN: ``{dtype label: ms per star}`` at MC_PASSES passes, and
    ``{"shift_in_sigma|<label>": largest |label change| under autocast / MC σ}`` at ``shift_passes``."""
    torch.manual_seed(0)
    net = BayesianCNN(3, 7514, dropout=0.3)
    fn = PhysicalNetwork(net, torch.zeros(7514), torch.ones(7514), torch.zeros(3), torch.ones(3)).to(device)
    out: dict = {}
    flux = 1 + 0.05 * torch.randn(stars, 7514, device=device)
    for label, dtype in DTYPES.items():
        def step(dtype=dtype):
            with _autocast(device, dtype):
                return mc_dropout(fn, flux, n_samples=MC_PASSES, batch_size=4096)
        out[label] = 1e3 / _rate(step, flux.shape[0], seconds, device)
    m32, p32 = mc_dropout(fn, flux, n_samples=shift_passes, batch_size=8192, seed=1)
    for label, dtype in list(DTYPES.items())[1:]:
        with _autocast(device, dtype):
            m, _ = mc_dropout(fn, flux, n_samples=shift_passes, batch_size=8192, seed=1)
        out[f"shift_in_sigma|{label}"] = float(((m.float() - m32).abs() / p32["epistemic"].sqrt()).max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per configuration")
    ap.add_argument("--device", default="cuda", help="torch device (cuda; cpu only to try the script)")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    ap.add_argument("--stars", type=int, default=256, help="spectra per MC-dropout call")
    ap.add_argument("--shift-passes", type=int, default=2000, help="MC passes for the autocast label shift")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device available: bench/gpu.py measured nothing (no GPU numbers are reported).")
        return
    batches = tuple(int(b) for b in a.batches.split(","))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} (not a GPU)"
    rates = forward_rates(a.seconds, device, batches)
    mc = mc_cost(a.seconds, device, a.stars, a.shift_passes)
    print(f"Device: {name}, torch {torch.__version__}; forward pass spectra/s (inference mode)")
    for net in ("apogee_net", "bcnn"):
        for batch in batches:
            print(f"  {net:<10s} batch {batch:>4d}: " + ", ".join(
                f"{label} {rates[f'{net}|{batch}|{label}']:,.0f}" for label in DTYPES))
    print(f"MC dropout, BayesianCNN 7514 px, {MC_PASSES} passes (fused), ms per star "
          f"(astroNN published ≈ {ASTRONN_MS_PER_STAR} ms):")
    for label in DTYPES:
        print(f"  {label}: {mc[label]:.3f} ms/star = {ASTRONN_MS_PER_STAR / mc[label]:.1f}x astroNN")
    noise = (2 / a.shift_passes) ** 0.5  # standard error of the difference of two independent MC means, in σ
    for label in list(DTYPES)[1:]:
        shift = mc[f"shift_in_sigma|{label}"]
        print(f"  {label}: max label shift vs float32 = {shift:.3f} σ ({a.shift_passes} passes, same seed "
              f"on both sides; with different dropout masks it would include MC noise of ~{noise:.2f} σ)")
    if a.json:
        a.json.write_text(json.dumps({"device": name, "forward": rates, "mc_dropout": mc}, indent=1))


if __name__ == "__main__":
    main()
