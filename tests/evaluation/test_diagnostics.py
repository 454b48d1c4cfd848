"""Self-consistency, cluster homogeneity and sensitivity of starlabels.evaluation.diagnostics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.table import Table
from scipy.stats import median_abs_deviation

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.evaluation import diagnostics
from starlabels.preprocess.grids import ASPCAP

LABELS = ["TEFF", "LOGG", "FE_H"]


# ---------------------------------------------------------------------------- self-consistency


def _visits(rng, n_stars=300, max_visits=6):
    ids = np.array([f"2M{i:08d}" for i in range(n_stars)])
    combined = np.c_[rng.uniform(4000, 5200, n_stars), rng.uniform(1, 3.5, n_stars),
                     rng.uniform(-1, 0.3, n_stars)]
    nvis = rng.integers(1, max_visits + 1, n_stars)
    star = np.repeat(np.arange(n_stars), nvis)
    snr = rng.uniform(5, 200, star.size)
    noise = np.array([1500.0, 3.0, 1.0])  # per-label noise at SNR 1
    visits = combined[star] + rng.normal(size=(star.size, 3)) * noise / snr[:, None]
    perm = rng.permutation(star.size)  # visit order unrelated to the combined table
    return ids, combined, ids[star][perm], visits[perm], snr[perm], noise


def test_self_consistency_matches_direct_computation():
    rng = np.random.default_rng(5)
    ids, combined, v_ids, visits, snr, noise = _visits(rng)
    # one visit of a star without a combined prediction, one MISSING visit label
    v_ids = np.append(v_ids, "2M_NOT_THERE")
    visits = np.vstack([visits, [4500.0, 2.0, 0.0]])
    snr = np.append(snr, 80.0)
    visits[0, 2] = MISSING
    edges = [5, 20, 50, 100, 200]
    res = diagnostics.self_consistency(visits, combined, LABELS, visit_ids=v_ids, combined_ids=ids,
                             visit_snr=snr, snr_bins=edges)
    assert res.n_unmatched == 1
    pos = pd.Index(ids).get_indexer(v_ids[:-1])
    diff = visits[:-1] - combined[pos]
    diff[0, 2] = np.nan
    np.testing.assert_allclose(res.differences[:-1], diff)
    assert np.all(np.isnan(res.differences[-1]))
    # astroNN Table 2 layout
    assert list(res.summary.columns) == ["label", "unit", "n", "median", "sigma_mad", "mae_at_snr"]
    fe = res.summary.iloc[2]
    ok = np.isfinite(diff[:, 2])
    assert fe["n"] == ok.sum()
    assert fe["sigma_mad"] == pytest.approx(median_abs_deviation(diff[ok, 2], scale="normal"),
                                            rel=1e-4)
    # Fig. 11: median |Δ| per SNR bin, falling with SNR roughly as 1/SNR
    by = res.by_snr[res.by_snr["label"] == "TEFF"].reset_index(drop=True)
    for k in range(4):
        sel = (snr[:-1] >= edges[k]) & (snr[:-1] < edges[k + 1])
        assert by.loc[k, "n"] == sel.sum()
        assert by.loc[k, "median_abs"] == pytest.approx(np.median(np.abs(diff[sel, 0])))
    assert np.all(np.diff(by["median_abs"]) < 0)
    # MAE at SNR 50: linear interpolation of the binned median |Δ| along the bins' median SNR,
    # ≈ 0.6745 · noise/50 (median |Δ| of Gaussian differences) with the default 10-wide bins
    fine = diagnostics.self_consistency(visits, combined, LABELS, visit_ids=v_ids, combined_ids=ids,
                              visit_snr=snr)
    for j, lab in enumerate(LABELS):
        rows = fine.by_snr[(fine.by_snr["label"] == lab) & (fine.by_snr["n"] > 0)]
        expect = np.interp(50.0, rows["by_median"], rows["median_abs"])
        assert fine.summary.loc[j, "mae_at_snr"] == pytest.approx(expect)
        assert expect == pytest.approx(0.6745 * noise[j] / 50, rel=0.5)


def test_self_consistency_from_catalog_tables():
    rng = np.random.default_rng(6)
    ids, combined, v_ids, visits, snr, _ = _visits(rng, n_stars=80)
    comb_t = Table(combined, names=LABELS)
    comb_t["APOGEE_ID"] = ids
    vis_t = pd.DataFrame(visits, columns=LABELS)
    vis_t["APOGEE_ID"] = v_ids
    vis_t["SNR"] = snr
    for j, lab in enumerate(LABELS):
        vis_t[f"{lab}_ERR"] = np.abs(visits[:, j]) * 0 + 10.0 / snr
    res = diagnostics.self_consistency(vis_t, comb_t, LABELS, visit_err="columns", snr_bins=[0, 50, 250])
    arr = diagnostics.self_consistency(visits, combined, LABELS, visit_ids=v_ids, combined_ids=ids,
                             visit_snr=snr, snr_bins=[0, 50, 250])
    np.testing.assert_allclose(res.summary["sigma_mad"], arr.summary["sigma_mad"])
    assert "median_err" in res.by_snr.columns
    with pytest.raises(InputDataError, match="duplicate"):
        diagnostics.self_consistency(visits, np.vstack([combined, combined[:1]]), LABELS, visit_ids=v_ids,
                           combined_ids=np.append(ids, ids[0]), visit_snr=snr)


# ------------------------------------------------------------------------ cluster homogeneity


def test_cluster_homogeneity_spreads_and_uncertainties():
    rng = np.random.default_rng(7)
    spreads = {"M67": 0.02, "NGC6819": 0.05, "M13": 0.2}
    rows = []
    for name, s in spreads.items():
        n = 40
        rows.append(pd.DataFrame({
            "APOGEE_ID": [f"{name}_{i}" for i in range(n)],
            "FE_H": rng.normal(-0.1, s, n), "MG_FE": rng.normal(0.1, s, n),
            "FE_H_ERR": np.full(n, s), "MG_FE_ERR": np.full(n, 2 * s),
        }))
    field = pd.DataFrame({"APOGEE_ID": [f"field_{i}" for i in range(50)],
                          "FE_H": rng.normal(0, 0.5, 50), "MG_FE": rng.normal(0, 0.5, 50),
                          "FE_H_ERR": 0.1, "MG_FE_ERR": 0.1})
    cat = pd.concat([*rows, field], ignore_index=True).sample(frac=1.0, random_state=1)
    cat.loc[cat.index[:3], "FE_H"] = MISSING
    members = {i: i.split("_")[0] for i in cat["APOGEE_ID"] if not i.startswith("field")}
    t = diagnostics.cluster_homogeneity(cat, members, ["FE_H", "MG_FE"])
    assert set(t["cluster"]) == set(spreads)
    assert list(t.columns) == ["cluster", "label", "unit", "n", "mean", "median", "std", "std_err",
                               "sigma_mad", "mean_err", "spread_ratio"]
    for name in spreads:
        sel = cat["APOGEE_ID"].str.startswith(name + "_").to_numpy()
        fe = cat.loc[sel, "FE_H"].to_numpy()
        fe = fe[fe != MISSING]
        row = t[(t["cluster"] == name) & (t["label"] == "FE_H")].iloc[0]
        assert row["n"] == fe.size
        assert row["std"] == pytest.approx(np.std(fe, ddof=1))
        assert row["sigma_mad"] == pytest.approx(median_abs_deviation(fe, scale="normal"), rel=1e-4)
        assert row["mean_err"] == pytest.approx(spreads[name])
        assert row["std_err"] == pytest.approx(row["std"] / np.sqrt(2 * (fe.size - 1)))
        mg = t[(t["cluster"] == name) & (t["label"] == "MG_FE")].iloc[0]
        # the members' scatter is what their errors claim for FE_H and half of it for MG_FE
        assert row["spread_ratio"] == pytest.approx(1.0, abs=0.3)
        assert mg["spread_ratio"] == pytest.approx(0.5, abs=0.15)
    summ = diagnostics.cluster_summary(t)
    assert summ.set_index("cluster").loc["M13", "mean_std"] > summ.set_index("cluster").loc[
        "M67", "mean_std"]
    # members as a table, ids with padding, arrays without errors
    mt = Table({"APOGEE_ID": [f" {k} " for k in members], "CLUSTER": list(members.values())})
    t2 = diagnostics.cluster_homogeneity(cat, mt, ["FE_H", "MG_FE"])
    pd.testing.assert_frame_equal(t, t2)
    t3 = diagnostics.cluster_homogeneity(cat[["FE_H", "MG_FE"]].to_numpy(), members, ["FE_H", "MG_FE"],
                               ids=cat["APOGEE_ID"].to_numpy(), err=None)
    np.testing.assert_allclose(t3["std"], t["std"])
    assert t3["mean_err"].isna().all()
    with pytest.raises(InputDataError, match="no star"):
        diagnostics.cluster_homogeneity(cat, {"nobody": "M67"}, ["FE_H"])


def test_small_clusters_get_no_spread():
    cat = {"APOGEE_ID": np.array(["a", "b", "c"]), "FE_H": np.array([0.0, 0.1, 0.2])}
    t = diagnostics.cluster_homogeneity(cat, {"a": "X", "b": "X", "c": "Y"}, "FE_H", err=None, min_members=2)
    assert t.set_index("cluster").loc["X", "std"] == pytest.approx(np.std([0.0, 0.1], ddof=1))
    assert np.isnan(t.set_index("cluster").loc["Y", "std"])


# -------------------------------------------------------------------------------- sensitivity


class LinearNet(torch.nn.Module):
    """mean = W x + b: the Jacobian of every star is W."""

    def __init__(self, n_pixels: int, n_labels: int):
        super().__init__()
        self.lin = torch.nn.Linear(n_pixels, n_labels)

    def forward(self, x):
        m = self.lin(x[:, 0, :])
        return m, torch.zeros_like(m)


class TanhNet(torch.nn.Module):
    """A small non-linear conv net with dropout (which must be off for the Jacobian)."""

    def __init__(self, n_pixels: int, n_labels: int):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 3, 5, padding=2)
        self.drop = torch.nn.Dropout(0.5)
        self.lin = torch.nn.Linear(3 * n_pixels, n_labels)

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1)
        m = self.lin(self.drop(h))
        return m, None


def test_sensitivity_of_linear_network_is_its_weights():
    torch.manual_seed(0)
    net = LinearNet(64, 3)
    x = np.random.default_rng(0).normal(size=(37, 64)).astype(np.float32)
    s = diagnostics.sensitivity(net, x, batch_size=8)
    assert s.jacobian.shape == (1, 3, 64)
    np.testing.assert_allclose(s.jacobian[0], net.lin.weight.detach().numpy(), rtol=1e-5, atol=1e-7)
    assert s.wavelength is None  # 64 pixels is no APOGEE grid
    # physical units: label std multiplies, input scale divides
    std = np.array([500.0, 1.0, 0.3])
    in_scale = np.linspace(0.5, 2.0, 64)
    s2 = diagnostics.sensitivity(net, x, label_scale=std, input_scale=in_scale, labels=["B", "C"],
                       label_names=["A", "B", "C"])
    expect = net.lin.weight.detach().numpy()[1:] * std[1:, None] / in_scale[None, :]
    np.testing.assert_allclose(s2.jacobian[0], expect, rtol=1e-5, atol=1e-7)
    assert s2.label_names == ["B", "C"] and "flux" in s2.units


def test_sensitivity_averages_per_star_jacobians_over_subsets():
    torch.manual_seed(1)
    p, n = 32, 16
    net = TanhNet(p, 2)
    net.train()
    x = torch.randn(n, 1, p)
    feh = np.linspace(-2, 0.5, n)
    subsets = {"metal-poor": feh < -1.5, "metal-rich": feh > 0.0}
    s = diagnostics.sensitivity(net, x, subsets=subsets, batch_size=5, label_names=["LOGG", "MG_FE"])
    assert net.training  # mode restored
    net.eval()
    per_star = np.stack([
        torch.autograd.functional.jacobian(lambda z: net(z[None])[0][0], x[i]).numpy()[:, 0, :]
        for i in range(n)
    ])  # (n, 2, p)
    for k, mask in enumerate(subsets.values()):
        np.testing.assert_allclose(s.jacobian[k], per_star[mask].mean(0), rtol=1e-4, atol=1e-7)
        assert s.n_stars[k] == mask.sum()
    np.testing.assert_allclose(s.curve("MG_FE", "metal-rich"), per_star[subsets["metal-rich"], 1].mean(0),
                               rtol=1e-4, atol=1e-7)
    with pytest.raises(InputDataError, match="no stars"):
        diagnostics.sensitivity(net, x, subsets={"none": np.zeros(n, bool)})
    with pytest.raises(InputDataError, match="not among"):
        diagnostics.sensitivity(net, x, labels=["TEFF"], label_names=["LOGG", "MG_FE"])


def test_sensitivity_passes_through_stopgrad():
    from starlabels.models import layers

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stop = layers.StopGrad()

        def forward(self, x):
            main = x[:, 0, :2].sum(1, keepdim=True)  # depends on pixels 0, 1
            ab = self.stop(main) + x[:, 0, 2:3]  # abundance: direct pixel 2 + main branch
            m = torch.cat([main, ab], 1)
            return m, None

    x = torch.ones(4, 1, 5)
    full = diagnostics.sensitivity(Branchy(), x).jacobian[0, 1]
    np.testing.assert_allclose(full, [1, 1, 1, 0, 0])
    direct = diagnostics.sensitivity(Branchy(), x, through_stopgrad=False).jacobian[0, 1]
    np.testing.assert_allclose(direct, [0, 0, 1, 0, 0])


def test_sensitivity_wavelength_from_apogee_grid():
    net = LinearNet(ASPCAP.n_pixels, 1)
    s = diagnostics.sensitivity(net, torch.zeros(2, ASPCAP.n_pixels))
    np.testing.assert_allclose(s.wavelength, ASPCAP.wavelength)
