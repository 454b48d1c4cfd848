"""Figures of starlabels.evaluation.plots: files written, not blank, axes labelled with units."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.image import imread
from matplotlib.patches import Polygon

from starlabels import units
from starlabels.errors import InputDataError
from starlabels.evaluation import diagnostic_plots, diagnostics, element_windows, label_text, metrics
from starlabels.evaluation import plots as pl
from starlabels.evaluation.isochrones import Isochrone
from starlabels.preprocess.grids import ASPCAP

LABELS = ["TEFF", "LOGG", "FE_H"]

# the young-star selection of APOGEE Net §4.1-4.2 (test data; the library takes it from
# starlabels.labels.young)
POLYGON = [(2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7)]
EDGES = [3.6, 3.8, 4.0, 4.2]


def assert_png_not_blank(path, min_std=0.05):
    assert path.is_file() and path.stat().st_size > 5000
    img = imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 200
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > min_std  # not a flat image
    assert (gray < 0.9).mean() > 0.01  # some ink on the page


def labels_of(fig):
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(11)
    n = 600
    teff = rng.uniform(3600, 5400, n)
    logg = np.clip(0.8 + (teff - 3600) / 1800 * 2.6 + rng.normal(0, 0.25, n), 0, 5)
    snr = rng.uniform(15, 400, n)
    cat = pd.DataFrame({
        "APOGEE_ID": [f"2M{i:08d}" for i in range(n)], "TEFF": teff, "LOGG": logg,
        "FE_H": rng.normal(-0.2, 0.3, n), "SNR": snr,
        "TEFF_ERR": 2500 / snr + 10, "LOGG_ERR": 4 / snr + 0.01, "FE_H_ERR": 2 / snr + 0.005,
    })
    cat.loc[0, "FE_H"] = -9999.0
    ref = cat[LABELS].copy()
    for lab in LABELS:
        ref[lab] = cat[lab] + rng.normal(size=n) * cat[f"{lab}_ERR"]
    return cat, ref


@pytest.fixture(scope="module")
def isos():
    t = np.linspace(5500, 3600, 30)
    return [Isochrone(9.6, mh, t + 200 * mh, 4.6 - (5500 - t) / 500) for mh in (-1.0, -0.5, 0.0)]


def test_kiel_panels_coloured_by_metallicity_and_uncertainty(tmp_path, catalog, isos):
    cat, _ = catalog
    path = tmp_path / "kiel.png"
    fig = pl.plot_kiel_panels(cat, colors=("FE_H", "LOGG_ERR"), isochrones=isos, path=path)
    assert_png_not_blank(path)
    main = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(main) == 2
    for ax, n_expected in zip(main, (len(cat) - 1, len(cat)), strict=True):
        assert ax.get_xlabel() == r"$T_\mathrm{eff}$ (K)" and ax.get_ylabel() == r"$\log g$ (dex)"
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        assert x0 > x1 and y0 > y1  # Teff and log g decrease outwards, as astronomers draw them
        assert x0 > 5300 and x1 < 3700
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert labels == [i.label for i in isos]
        pts = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(pts) == 1 and len(pts[0].get_offsets()) == n_expected  # MISSING [Fe/H] dropped
    cbar_labels = {ax.get_ylabel() for ax in fig.axes if not ax.get_xlabel()}
    assert {"[Fe/H] (dex)", r"$\sigma$($\log g$) (dex)"} <= cbar_labels
    # isochrones take the [Fe/H] colour map on the metallicity panel: one colour per [M/H]
    coloured = [ln.get_color() for ln in main[0].get_lines() if not ln.get_label().startswith("_")]
    assert len({tuple(np.round(matplotlib.colors.to_rgba(c), 3)) for c in coloured}) == 3


def test_kiel_from_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    t, g = rng.uniform(3000, 6000, 200), rng.uniform(0.5, 5, 200)
    fig = pl.plot_kiel(teff=t, logg=g, color=rng.normal(size=200), color_name="MG_FE",
                       path=tmp_path / "k.png")
    assert_png_not_blank(tmp_path / "k.png")
    assert any(ax.get_ylabel() == "[Mg/Fe] (dex)" for ax in fig.axes)
    with pytest.raises(InputDataError, match="no catalog"):
        pl.plot_kiel(teff="TEFF", logg=g)


def test_uncertainty_vs_snr(tmp_path, catalog):
    cat, _ = catalog
    fig = pl.plot_uncertainty_vs_snr(cat, LABELS, path=tmp_path / "u.png")
    assert_png_not_blank(tmp_path / "u.png")
    assert labels_of(fig) == [
        ("SNR (per pixel)", r"$\sigma$($T_\mathrm{eff}$) (K)"),
        ("SNR (per pixel)", r"$\sigma$($\log g$) (dex)"),
        ("SNR (per pixel)", r"$\sigma$([Fe/H]) (dex)"),
    ]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # running median follows the injected 2500/SNR + 10 law
    x, y = ax.get_lines()[0].get_data()
    ok = np.isfinite(x)
    np.testing.assert_allclose(y[ok], 2500 / x[ok] + 10, rtol=0.1)


def test_pred_vs_ref_annotates_median_and_sigma_mad(tmp_path, catalog):
    cat, ref = catalog
    fig = pl.plot_pred_vs_ref(cat, ref, LABELS, path=tmp_path / "p.png")
    assert_png_not_blank(tmp_path / "p.png")
    assert len(fig.axes) == 6
    stats = metrics.residual_table(cat, ref, LABELS)
    top = fig.axes[0::2]
    bottom = fig.axes[1::2]
    for j, (ax, axr) in enumerate(zip(top, bottom, strict=True)):
        unit = units.label_unit(LABELS[j])
        assert ax.get_ylabel() == f"Predicted {label_text.axis_label(LABELS[j])}"
        assert axr.get_xlabel() == f"Reference {label_text.axis_label(LABELS[j])}"
        assert axr.get_ylabel() == rf"$\Delta$ ({unit})"
        text = ax.texts[0].get_text()
        assert f"N = {stats.loc[j, 'n']}" in text
        assert f"{stats.loc[j, 'sigma_mad']:.3g} {unit}" in text
        assert f"{stats.loc[j, 'median']:+.3g} {unit}" in text
    # with a colour array there is a labelled colour bar
    fig2 = pl.plot_pred_vs_ref(cat, ref, ["LOGG"], color=cat["SNR"].to_numpy(), color_name="SNR")
    assert any(ax.get_ylabel() == "SNR" for ax in fig2.axes)


def test_binned_residuals_figure(tmp_path, catalog):
    cat, ref = catalog
    t = metrics.residuals_by_snr(cat, ref, LABELS, err="columns", bins=[10, 30, 60, 120, 250, 400])
    fig = pl.plot_binned_residuals(t, x_label="SNR", log_x=True, annotate_at=50,
                                   path=tmp_path / "b.png")
    assert_png_not_blank(tmp_path / "b.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "SNR" and ax.get_ylabel() == r"$T_\mathrm{eff}$ (K)"
    x, y = ax.get_lines()[0].get_data()
    rows = t[(t["label"] == "TEFF") & (t["n"] > 0)]
    np.testing.assert_allclose(y, rows["median_abs"])
    np.testing.assert_allclose(x, rows["by_median"])  # plotted at the bins' median SNR
    assert "at 50" in ax.texts[0].get_text()
    with pytest.raises(InputDataError, match="binned"):
        pl.plot_binned_residuals(metrics.residual_table(cat, ref, LABELS))


def test_young_selection_polygon_and_age_bins(tmp_path):
    rng = np.random.default_rng(3)
    t = np.r_[rng.uniform(2400, 4400, 600), rng.uniform(4000, 5500, 300)]
    g = np.r_[rng.uniform(2.0, 4.4, 600), rng.uniform(1.0, 3.0, 300)]
    fig = pl.plot_young_selection(teff=t, logg=g, polygon=POLYGON, age_bin_edges=EDGES,
                                  age_bin_labels=["<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr"],
                                  path=tmp_path / "y.png")
    assert_png_not_blank(tmp_path / "y.png")
    ax = fig.axes[0]
    polys = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(polys) == 1
    np.testing.assert_allclose(polys[0].get_xy()[:3], POLYGON)
    # legend: one entry per age bin with its count of selected stars
    from matplotlib.path import Path as MplPath

    inside = MplPath(np.array(POLYGON) / [1000, 1]).contains_points(np.c_[t / 1000, g], radius=1e-9)
    codes = np.searchsorted(EDGES, g, side="right")
    texts = [tx.get_text() for tx in ax.get_legend().get_texts()]
    assert "young-star selection" in texts
    for k in range(5):
        assert any(tx.endswith(f"N = {int((inside & (codes == k)).sum())}") for tx in texts)
    assert any(tx.startswith("log g < 3.6 dex (<1 Myr)") for tx in texts)
    assert ax.get_xlim()[0] > ax.get_xlim()[1]


def test_young_selection_defaults_come_from_labels_young(catalog):
    from starlabels.labels import young

    cat, _ = catalog
    fig = pl.plot_young_selection(cat)
    polys = [p for p in fig.axes[0].patches if isinstance(p, Polygon)]
    np.testing.assert_allclose(polys[0].get_xy()[:3], np.asarray(young.YOUNG_POLYGON))
    # the age bins are young.LOGG_AGE_BIN_EDGES with young.LOGG_AGE_BIN_LABELS in the legend
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    first = f"log g < {young.LOGG_AGE_BIN_EDGES[0]:g} dex ({young.LOGG_AGE_BIN_LABELS[0]})"
    assert any(t.startswith(first) for t in texts)
    for age in young.LOGG_AGE_BIN_LABELS:
        assert sum(f"dex ({age})" in t for t in texts) == 1


def _sens():
    torch.manual_seed(0)
    n_pix = ASPCAP.n_pixels

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(2, n_pix) * 0.01)

        def forward(self, x):
            mean = torch.tanh(x[:, 0]) @ self.w.T
            return mean, None

    x = torch.randn(12, n_pix) * 0.1
    feh = np.linspace(-2, 0.5, 12)
    return diagnostics.sensitivity(Net(), x, subsets={"[Fe/H] < -1": feh < -1, "[Fe/H] > 0": feh > 0},
                         label_names=["LOGG", "MG_FE"], label_scale=[1.2, 0.1])


def test_sensitivity_plot_with_windows_and_brackett_lines(tmp_path):
    s = _sens()
    win = np.zeros(ASPCAP.n_pixels, dtype=bool)
    win[1000:1010] = win[4000:4020] = True
    fig = diagnostic_plots.plot_sensitivity(s, "MG_FE", windows=win, path=tmp_path / "s.png")
    assert_png_not_blank(tmp_path / "s.png", min_std=0.02)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Vacuum wavelength (Å)"
    assert "[Mg/Fe]" in ax.get_ylabel() and "(dex per unit input)" in ax.get_ylabel()
    texts = {t.get_text(): t.get_position()[0] for t in ax.texts}
    for name in ("Br11", "Br12", "Br13", "Br14", "Br15", "Br16", "Br17", "Br18", "Br19"):
        assert texts[name] == pytest.approx(element_windows.BRACKETT_LINES[name])
    curves = [ln for ln in ax.get_lines() if "N =" in ln.get_label()]
    feh = np.linspace(-2, 0.5, 12)
    assert [c.get_label() for c in curves] == [f"[Fe/H] < -1 (N = {(feh < -1).sum()})",
                                               f"[Fe/H] > 0 (N = {(feh > 0).sum()})"]
    # curves break at the two detector gaps (NaN inserted) and carry the Jacobian values
    y = curves[0].get_ydata()
    assert np.isnan(y).sum() == 2
    np.testing.assert_allclose(y[np.isfinite(y)], s.jacobian[0, 1])
    assert len(ax.collections) == 1  # the shaded windows
    fig2 = diagnostic_plots.plot_sensitivity(s, "LOGG", windows=None)
    assert len(fig2.axes[0].collections) == 0 and "$\\log g$" in fig2.axes[0].get_ylabel()


def test_cluster_and_zscore_figures(tmp_path, catalog):
    cat, ref = catalog
    members = {i: ("M67" if k % 2 else "NGC6819") for k, i in enumerate(cat["APOGEE_ID"][:80])}
    t = diagnostics.cluster_homogeneity(cat, members, ["FE_H", "LOGG"])
    fig = diagnostic_plots.plot_cluster_homogeneity(t, labels=["FE_H", "LOGG"], path=tmp_path / "c.png")
    assert_png_not_blank(tmp_path / "c.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["spread (dex)", "spread (dex)"]
    assert {ax.get_title().split(" ")[0] for ax in fig.axes} == {"M67", "NGC6819"}
    fig = pl.plot_zscore_histograms(cat, ref, LABELS, path=tmp_path / "z.png")
    assert_png_not_blank(tmp_path / "z.png")
    z = metrics.zscore_table(cat, ref, LABELS)
    for ax, (_, row) in zip(fig.axes, z.iterrows(), strict=True):
        assert f"{row['z_sigma_mad']:.3f}" in ax.texts[0].get_text()
    assert fig.axes[0].get_ylabel() == "probability density"


def test_kiel_from_arrays_without_colour():
    rng = np.random.default_rng(1)
    fig = pl.plot_kiel(teff=rng.uniform(3500, 6000, 50), logg=rng.uniform(1, 5, 50))
    assert len(fig.axes) == 1  # no colour bar
    assert fig.axes[0].texts[0].get_text() == "N = 50"
