"""evaluation.fit_plots: the spectrum-fit figure."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.evaluation.fit_plots import plot_spectrum_fit


def test_fit_figure_panels_residuals_and_masked_pixels(tmp_path):
    lam = 10.0 ** (4.18 + 6e-6 * np.arange(200))
    model = 1.0 - 0.3 * np.exp(-0.5 * ((np.arange(200) % 50 - 25) / 2.0) ** 2)
    error = np.full(200, 0.01)
    flux = model + 0.02  # residual exactly 2σ everywhere unmasked
    error[10:20] = np.inf
    flux[30] = np.nan
    path = tmp_path / "fit.png"
    fig = plot_spectrum_fit(lam, flux, error, model, segments=[(0, 100), (100, 200)],
                            labels={"TEFF": (4800.0, 12.0)}, title="star", path=path)
    assert path.is_file() and path.stat().st_size > 10_000
    axes = fig.axes
    assert len(axes) == 4  # data/model and residual panel per segment
    resid = axes[1].lines[0].get_ydata()
    assert np.all(np.isnan(resid[10:20])) and np.isnan(resid[30])
    np.testing.assert_allclose(resid[np.isfinite(resid)], 2.0)
    assert len(axes[0].patches) >= 2  # the two masked runs are shaded
    assert "TEFF = 4800 ± 12" in fig._suptitle.get_text()


def test_fit_figure_rejects_mismatched_arrays():
    with pytest.raises(InputDataError, match="one length"):
        plot_spectrum_fit(np.arange(10.0), np.ones(10), np.ones(9), np.ones(10))
