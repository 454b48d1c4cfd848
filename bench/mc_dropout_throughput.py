"""MC-dropout cost per star: the fused BayesianCNN path against the previous implementation.

Side by side in one process, interleaved repeats, same network (the demo's BayesianCNN: 7514
pixels — the ASPCAP grid —, 3 labels, dropout 0.3, random weights: timing does not depend on
them), same float32 input, same thread count (set with ``--threads``, default 1), same allocator
(glibc default; ``--tuned-allocator`` applies ``starlabels.tune_process`` to both).
The previous implementation is kept
verbatim below as :func:`reference_mc_dropout` (repeat each spectrum n_samples times, dropout
layers in train mode, masks from ``bernoulli_``).

    python bench/mc_dropout_throughput.py [--threads 1] [--stars 8] [--samples 100] [--repeats 5]
                                          [--tuned-allocator] [--json]

Prints ms per star (median of the repeats) for both, their ratio, and the CPU hours for 250,000
stars. Also checks that both give the same mean and σ to within MC noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from starlabels.inference.uncertainty import PhysicalNetwork, mc_dropout
from starlabels.models.bcnn import BayesianCNN
from starlabels.models.layers import mc_dropout as dropout_on

N_PIXELS, N_LABELS = 7514, 3


@torch.inference_mode()
def reference_mc_dropout(fn: PhysicalNetwork, flux: torch.Tensor, n_samples: int, batch_size: int):
    """The implementation before issue 17 (uncertainty._replicated_moments with repeated input)."""
    n, L = flux.shape[0], fn.n_labels
    rows = max(1, batch_size // n_samples)
    mean, var = flux.new_empty((n, L)), flux.new_empty((n, L))
    with dropout_on(fn.network):
        for start in range(0, n, rows):
            sl = slice(start, min(n, start + rows))
            b = sl.stop - sl.start
            m, _ = fn(flux[sl].repeat_interleave(n_samples, dim=0))
            m = m.reshape(b, n_samples, L)
            mean[sl], var[sl] = m.mean(dim=1), m.var(dim=1, unbiased=False)
    return mean, var


def build(seed: int = 0) -> tuple[PhysicalNetwork, torch.Tensor]:
    torch.manual_seed(seed)
    net = BayesianCNN(N_LABELS, N_PIXELS, dropout=0.3)
    fn = PhysicalNetwork(net, torch.zeros(N_PIXELS), torch.ones(N_PIXELS),
                         torch.tensor([4500.0, 2.5, 0.0]), torch.tensor([500.0, 1.0, 0.3]))
    fn.eval()
    return fn, 1.0 + 0.05 * torch.randn(64, N_PIXELS)


def run(threads: int = 1, stars: int = 8, samples: int = 100, repeats: int = 5,
        batch_size: int = 256) -> dict:
    torch.set_num_threads(threads)
    fn, flux = build()
    x = flux[:stars]
    timings: dict[str, list[float]] = {"before": [], "after": []}
    calls = {"before": lambda: reference_mc_dropout(fn, x, samples, batch_size),
             "after": lambda: mc_dropout(fn, x, n_samples=samples, batch_size=batch_size)}
    for f in calls.values():
        f()  # warm-up
    for _ in range(repeats):
        for name, f in calls.items():
            t0 = time.perf_counter()
            f()
            timings[name].append((time.perf_counter() - t0) * 1e3 / stars)
    # agreement: both estimate the same MC mean and σ (many passes, compare within MC noise)
    torch.manual_seed(1)
    m_old, v_old = reference_mc_dropout(fn, flux[:4], 2000, 2000)
    m_new, p_new = mc_dropout(fn, flux[:4], n_samples=2000, batch_size=2000, seed=2)
    sd_old, sd_new = v_old.sqrt(), p_new["epistemic"].sqrt()
    before = statistics.median(timings["before"])
    after = statistics.median(timings["after"])
    return {
        "threads": threads, "dtype": "float32", "stars": stars, "samples": samples,
        "batch_size": batch_size, "n_pixels": N_PIXELS,
        "ms_per_star_before": before, "ms_per_star_after": after, "speedup": before / after,
        "cpu_hours_250k_before": before * 250_000 / 3.6e6,
        "cpu_hours_250k_after": after * 250_000 / 3.6e6,
        "max_mean_diff_in_sigma": float(((m_new - m_old).abs() / sd_old).max()),
        "max_sigma_ratio_minus_1": float((sd_new / sd_old - 1).abs().max()),
        "repeats_ms_before": timings["before"], "repeats_ms_after": timings["after"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stars", type=int, default=8)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--tuned-allocator", action="store_true",
                    help="apply starlabels.tune_process() first (both implementations)")
    a = ap.parse_args()
    if a.tuned_allocator:
        from starlabels.process import tune_process

        tune_process()
    r = run(a.threads, a.stars, a.samples, a.repeats)
    r["allocator"] = "tuned (mallopt)" if a.tuned_allocator else "glibc default"
    if a.json:
        print(json.dumps(r))
        return
    print(f"MC dropout, demo BayesianCNN ({N_PIXELS} px, {N_LABELS} labels, p=0.3), {a.samples} passes, "
          f"threads={a.threads}, float32, batch {r['batch_size']} rows, allocator: {r['allocator']}")
    print(f"  before (repeat + bernoulli_): {r['ms_per_star_before']:.1f} ms/star "
          f"({r['cpu_hours_250k_before']:.2f} CPU h for 250,000 stars)")
    print(f"  after  (fused passes):        {r['ms_per_star_after']:.1f} ms/star "
          f"({r['cpu_hours_250k_after']:.2f} CPU h for 250,000 stars)")
    print(f"  speed-up {r['speedup']:.2f}x (median of {a.repeats} interleaved repeats)")
    print(f"  agreement (2000 passes): max |Δmean|/σ = {r['max_mean_diff_in_sigma']:.3f}, "
          f"max |σ_after/σ_before − 1| = {r['max_sigma_ratio_minus_1']:.3f}")


if __name__ == "__main__":
    main()
