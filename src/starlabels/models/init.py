"""Weight initialisation for the label networks.

torch's default initialisation (Kaiming-uniform with a = √5, i.e. weights of variance 1/(3·fan_in))
shrinks the signal variance several-fold per ReLU layer. After APOGEE Net's twelve convolutions,
O(1) inputs move the outputs by only ~1e-8–1e-6 standardised label units between stars (measured
on simulated spectra, bench/results/accuracy.md), and training barely starts within a CPU budget.
He initialisation (Kaiming-normal, fan-in, ReLU gain: variance 2/fan_in) keeps the variance through
ReLU layers; it is also astroNN's choice (Keras ``he_normal`` kernels, zero biases).
"""

from __future__ import annotations

from torch import nn

__all__ = ["kaiming_init"]


def kaiming_init(network: nn.Module) -> nn.Module:
    """He-normal weights and zero biases for every convolution and hidden dense layer, in place.

    The output layers — dense layers with ``network.n_labels`` outputs, else the last dense layer —
    keep torch's default (small outputs at the start). Returns ``network``.
    """
    layers = [m for m in network.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    n_out = getattr(network, "n_labels", None)
    outputs = [m for m in linear if m.out_features == n_out] or linear[-1:]
    for m in layers:
        if any(m is o for o in outputs):
            continue
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return network
