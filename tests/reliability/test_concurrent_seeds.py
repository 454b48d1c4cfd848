"""No global lock, no global RNG: every ``predict`` call draws from its own generator.

Threads predicting at the same time with different seeds must each get exactly the numbers of
their single-threaded run (with draws taken from torch's global RNG and no lock, the threads would
consume each other's random numbers), and torch's global RNG must be left untouched.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import starlabels
from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.inference import uncertainty as uncertainty_methods
from starlabels.inference.inference_model import resolve
from starlabels.inference.predict_options import PredictOptions
from starlabels.models import build_network
from starlabels.models.folder import TrainedModel

N_PIXELS = 256


def _model(arch: str) -> TrainedModel:
    net = build_network(arch, n_labels=3, n_pixels=N_PIXELS, dropout=0.3)
    with torch.no_grad():  # deterministic weights without touching the global RNG
        gen = torch.Generator().manual_seed(7)
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    net.eval()
    return TrainedModel(
        net, ["TEFF", "LOGG", "FE_H"], LabelScaler([5000.0, 3.0, 0.0], [500.0, 1.0, 0.3]),
        SpectrumScaler("none"), ["K", "dex", "dex"],
    )


def _spectra(n: int = 6):
    rng = np.random.default_rng(3)
    x = 1 + 0.1 * rng.normal(size=(n, N_PIXELS))
    return x, np.full_like(x, 0.02)


@pytest.mark.parametrize(
    ("arch", "method"),
    [("apogee_net", "mc_dropout"), ("bcnn", "mc_dropout"), ("bcnn", "noise")],
)
def test_concurrent_threads_with_different_seeds_get_their_single_threaded_results(arch, method):
    model = _model(arch)
    x, e = _spectra()
    seeds = [11, 12, 13, 14]

    def run(seed: int):
        return starlabels.predict(model, x, e, preprocessed=True, uncertainty=method, n_samples=32,
                                  seed=seed, options=PredictOptions(chunk_size=2), batch_size=16)

    rng_before = torch.get_rng_state()
    alone = {s: run(s) for s in seeds}
    # different seeds really give different draws (so a mix-up between threads would show)
    assert not np.array_equal(alone[11].std, alone[12].std)
    if method == "mc_dropout" and arch == "apogee_net":  # the generic path: nn.Dropout swapped
        net = resolve(model).physical.network
        assert any(isinstance(m, uncertainty_methods.GeneratorDropout) for m in net.modules())

    start = threading.Barrier(len(seeds))
    results: dict[int, list] = {s: [] for s in seeds}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            start.wait()
            for _ in range(3):  # several rounds, so the threads' passes interleave
                results[seed].append(run(seed))
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for s in seeds:
        for got in results[s]:
            np.testing.assert_array_equal(got.mean, alone[s].mean)
            np.testing.assert_array_equal(got.std, alone[s].std)
            for k, v in alone[s].variance_parts.items():
                np.testing.assert_array_equal(got.variance_parts[k], v)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG was never drawn from


def test_generator_dropout_has_dropout_semantics_and_draws_only_from_its_generator():
    drop = uncertainty_methods.GeneratorDropout(0.25)
    x = torch.ones(200_000)
    plain = nn.Dropout(0.25)
    drop.eval()
    assert torch.equal(drop(x), x)  # eval: identity, like nn.Dropout
    drop.train()
    rng_before = torch.get_rng_state()
    with uncertainty_methods.dropout_generator(torch.Generator().manual_seed(5)):
        a = drop(x)
    with uncertainty_methods.dropout_generator(torch.Generator().manual_seed(5)):
        b = drop(x)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(a, b)
    # zeroed with probability p (binomial σ of the kept fraction ≈ 0.001), survivors scaled 1/(1−p)
    kept = a != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    assert torch.allclose(a[kept], torch.full_like(a[kept], 1 / 0.75))
    # without a generator it is nn.Dropout itself (same global-RNG draw)
    torch.manual_seed(9)
    c = drop(x)
    torch.manual_seed(9)
    assert torch.equal(c, plain(x))


def test_the_swap_keeps_p_and_mode_and_other_dropout_types_are_refused():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.4), nn.Sequential(nn.Dropout(0.1)))
    net[1].eval()
    uncertainty_methods.use_generator_dropout(net)
    assert type(net[1]) is uncertainty_methods.GeneratorDropout and net[1].p == 0.4 and not net[1].training
    assert type(net[2][0]) is uncertainty_methods.GeneratorDropout and net[2][0].p == 0.1
    odd = nn.Sequential(nn.Dropout1d(0.5), nn.Flatten(), nn.Linear(4, 1))
    fn = uncertainty_methods.PhysicalNetwork(odd, torch.zeros(4), torch.ones(4), torch.zeros(1),
                                             torch.ones(1))
    with pytest.raises(starlabels.errors.StarlabelsError, match="Dropout1d"):
        uncertainty_methods.mc_dropout(fn, torch.ones(2, 4), n_samples=4, seed=0)
