"""Quality flag bits."""

from __future__ import annotations

import numpy as np

from starlabels.inference import flags


def test_bits_are_unique_documented_and_decodable():
    assert len(set(flags.FLAG_BITS.values())) == len(flags.FLAG_BITS)
    assert set(flags.FLAG_DESCRIPTIONS) == set(flags.FLAG_BITS)
    for name in flags.FLAG_BITS:
        assert name in flags.__doc__  # the docstring table lists every bit
        assert flags.decode(flags.bit(name)) == [name]
    v = flags.bit("LOW_SNR") | flags.bit("HIGH_UNCERTAINTY")
    assert flags.decode(v) == ["LOW_SNR", "HIGH_UNCERTAINTY"]
    assert "INVALID_SPECTRUM" in flags.describe()


def test_spectrum_flags():
    valid = np.array([True, False, True, True, True])
    snr = np.array([100.0, np.nan, 10.0, np.nan, 50.0])
    masked = np.array([0.0, 1.0, 0.1, 0.3, 0.25])
    fl = flags.spectrum_flags(valid, snr, masked, snr_min=30, max_masked_fraction=0.25)
    assert fl.dtype == np.int32
    assert [flags.decode(v) for v in fl] == [
        [], ["INVALID_SPECTRUM", "MANY_MASKED_PIXELS"], ["LOW_SNR"], ["MANY_MASKED_PIXELS"], [],
    ]


def test_label_flags_from_reference_sigma_and_training_range():
    mean = np.array([[5000.0, 2.0], [9000.0, 2.0], [5000.0, 2.0], [np.nan, np.nan]])
    std = np.array([[50.0, 0.1], [50.0, 0.1], [50.0, 0.5], [np.nan, np.nan]])
    fl = flags.label_flags(
        mean, std, sigma_reference=np.array([100.0, 0.2]),
        label_range=(np.array([3000.0, 0.0]), np.array([7000.0, 5.0])),
    )
    assert [flags.decode(v) for v in fl] == [[], ["LABEL_OUT_OF_RANGE"], ["HIGH_UNCERTAINTY"], []]
    # a margin widens the range; a factor raises the threshold
    fl = flags.label_flags(mean, std, sigma_reference=np.array([100.0, 0.2]), ood_factor=3.0,
                       label_range=(np.array([3000.0, 0.0]), np.array([7000.0, 5.0])), range_margin=0.6)
    assert fl.tolist() == [0, 0, 0, 0]
