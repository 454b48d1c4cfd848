"""CensoredBayesianCNN: gradient isolation, max-norm, censoring, windows, config round trip."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from starlabels.errors import InputDataError, InputFileError
from starlabels.losses import masked_mse, robust_mse
from starlabels.models import CensoredBayesianCNN, build_network, bypass_stopgrad, mc_dropout
from starlabels.models.censored_windows import element_key, ranges_to_windows, windows_to_ranges

P = 256


def small_windows() -> tuple[np.ndarray, list[str]]:
    w = np.zeros((3, P), dtype=bool)
    w[0, 20:40] = True
    w[0, 100:110] = True
    w[1, 30:60] = True  # overlaps element 0
    w[2, 200:230] = True
    return w, ["MG", "AL", "NI"]


def small_net(**kw) -> CensoredBayesianCNN:
    w, names = small_windows()
    kw = {"dropout": 0.2, "hidden": [32, 16], "element_hidden": [8, 4], **kw}
    return CensoredBayesianCNN(w, names, **kw)


def test_output_layout_and_shapes():
    torch.manual_seed(0)
    net = small_net().eval()
    assert net.n_labels == 6 and net.n_pixels == P and net.has_variance
    x = torch.randn(4, 1, P)
    mean, log_var = net(x)
    assert mean.shape == log_var.shape == (4, 6)
    main_mean, main_log_var, _ = net.main_forward(x)
    assert torch.equal(mean[:, :3], main_mean) and torch.equal(log_var[:, :3], main_log_var)


def test_abundance_loss_sends_exactly_zero_gradient_into_main_branch():
    torch.manual_seed(0)
    net = small_net().train()  # dropout active, as in training
    x = torch.randn(8, 1, P)
    mean, log_var = net(x)
    target = torch.randn(8, 6)
    target[:, :3] = -9999.0  # main labels missing: only the abundances carry loss
    robust_mse(mean, log_var, target, torch.full_like(target, 0.1)).mean().backward()
    main = net.main_parameters()
    assert len(main) == 12  # 2 convs + 2 dense + 2 heads, weights and biases
    for p in main:
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    # ...while the element networks and the latent layer do learn from it
    assert torch.count_nonzero(net.element_w1.grad) > 0
    assert torch.count_nonzero(net.latent.weight.grad) > 0


def test_main_labels_train_the_main_branch_and_astronn_mode_leaks():
    torch.manual_seed(0)
    x = torch.randn(8, 1, P)
    net = small_net(dropout=0.0)
    target = torch.randn(8, 6)
    target[:, 3:] = -9999.0
    masked_mse(net(x)[0], target).mean().backward()
    assert torch.count_nonzero(net.trunk[1].weight.grad) > 0
    assert net.element_w1.grad is None or torch.count_nonzero(net.element_w1.grad) == 0
    # with latent_stop_grad=False (astroNN's wiring) abundance errors reach the trunk via the latent
    leaky = small_net(dropout=0.0, latent_stop_grad=False)
    target = torch.randn(8, 6)
    target[:, :3] = -9999.0
    masked_mse(leaky(x)[0], target).mean().backward()
    assert torch.count_nonzero(leaky.trunk[1].weight.grad) > 0
    assert leaky.main_mean.weight.grad is None or torch.count_nonzero(leaky.main_mean.weight.grad) == 0


def test_max_norm_holds_after_every_optimiser_step():
    torch.manual_seed(0)
    delta = 0.3
    net = small_net(max_norm=delta)
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    x = torch.randn(16, 1, P)
    target = 50 * torch.randn(16, 6)  # far targets: large updates
    exceeded = False
    for _ in range(6):
        opt.zero_grad()
        masked_mse(net(x)[0], target).mean().backward()
        opt.step()
        exceeded |= bool((net.latent.weight.norm(dim=1) > delta).any())
        net.apply_constraints()
        assert (net.latent.weight.norm(dim=1) <= delta).all()
    assert exceeded  # Adam did push the weights out; the constraint brought them back


def test_element_output_ignores_out_of_window_pixels_except_through_main_branch():
    torch.manual_seed(0)
    net = small_net().eval()
    w = net.windows.numpy()
    x = torch.randn(3, 1, P)
    outside_all = torch.from_numpy(~w.any(axis=0))
    x_pert = x.clone()
    x_pert[:, 0, outside_all] += 5 * torch.randn(3, int(outside_all.sum()))
    mean0, _ = net(x)
    mean1, _ = net(x_pert)
    assert not torch.equal(mean0[:, :3], mean1[:, :3])  # the main branch sees the change
    assert not torch.equal(mean0[:, 3:], mean1[:, 3:])  # ... and passes it on through the bridge
    _, _, h1 = net.main_forward(x_pert)
    bridge1 = net.bridge(h1, mean1[:, :3])
    # the whole change of the element outputs is explained by the bridge: exact equality
    el_mean, _ = net.element_forward(x, bridge1)
    assert torch.equal(el_mean, mean1[:, 3:])
    # per element: perturbing pixels outside element e's windows (but inside others') leaves e fixed
    bridge0 = net.bridge(*reversed(net.main_forward(x)[::2]))
    for e in range(3):
        xe = x.clone()
        out_e = torch.from_numpy(~w[e])
        xe[:, 0, out_e] += 3.0
        a, _ = net.element_forward(x, bridge0)
        b, _ = net.element_forward(xe, bridge0)
        assert torch.equal(a[:, e], b[:, e])
        others = [k for k in range(3) if k != e]
        assert not torch.equal(a[:, others], b[:, others])


def test_sensitivity_outside_windows_comes_only_from_the_bridge():
    torch.manual_seed(0)
    net = small_net(dropout=0.0).eval()
    x = torch.randn(1, 1, P, requires_grad=True)
    outside = torch.from_numpy(~net.windows[0].numpy())
    mean, _ = net(x)
    (grad_direct,) = torch.autograd.grad(mean[0, 3], x)
    assert torch.count_nonzero(grad_direct[0, 0, outside]) == 0  # StopGrad: direct path only
    with bypass_stopgrad(net):
        mean, _ = net(x)
        (grad_full,) = torch.autograd.grad(mean[0, 3], x)
    assert torch.count_nonzero(grad_full[0, 0, outside]) > 0  # the full Jacobian includes the bridge
    with torch.no_grad():
        net.element_w_bridge.zero_()
    with bypass_stopgrad(net):
        mean, _ = net(x)
        (grad_cut,) = torch.autograd.grad(mean[0, 3], x)
    assert torch.count_nonzero(grad_cut[0, 0, outside]) == 0


def test_batched_elements_equal_a_per_element_loop():
    torch.manual_seed(0)
    net = small_net().eval()
    x = torch.randn(5, 1, P)
    bridge = torch.randn(5, net.n_latent + net.n_main_labels)
    mean, log_var = net.element_forward(x, bridge)
    xf = x[:, 0].double()
    start = 0
    for e in range(net.n_elements):
        idx = torch.nonzero(net.windows[e]).flatten()
        w1 = net.element_w1[start : start + len(idx)].double()
        start += len(idx)
        a1 = torch.relu(xf[:, idx] @ w1 + net.element_b1[e].double())
        a2 = torch.relu(a1 @ net.element_w2[e].double() + net.element_b2[e].double())
        out = (
            a2 @ net.element_w_out[e].double()
            + bridge.double() @ net.element_w_bridge[e].double()
            + net.element_b_out[e].double()
        )
        torch.testing.assert_close(mean[:, e].double(), out[:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(log_var[:, e].double(), out[:, 1], rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_window_check_on_load():
    torch.manual_seed(0)
    net = small_net().eval()
    cfg = json.loads(json.dumps(net.config()))
    clone = build_network("bcnn_censored", **cfg).eval()
    assert torch.equal(clone.windows, net.windows)
    clone.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, P)
    assert all(torch.equal(a, b) for a, b in zip(net(x), clone(x), strict=True))
    other_w, names = small_windows()
    other_w[2, 240] = True
    other = CensoredBayesianCNN(other_w, names, hidden=[32, 16], element_hidden=[8, 4])
    with pytest.raises(RuntimeError, match="element windows differ"):
        other.load_state_dict(net.state_dict())
    with mc_dropout(net):
        assert not torch.equal(net(x)[0], net(x)[0])  # element dropouts are MC dropouts too


def test_windows_ranges_and_names():
    w, _ = small_windows()
    ranges = windows_to_ranges(w)
    assert ranges[0] == [[20, 40], [100, 110]]
    assert np.array_equal(ranges_to_windows(ranges, P), w)
    assert element_key("MG_FE") == element_key("[Mg/Fe]") == element_key("mg") == "MG"
    assert element_key("TIII_FE") == "TIII"


def test_constructor_errors_and_empty_window_warning(tmp_path):
    w, names = small_windows()
    with pytest.raises(InputDataError, match="element_names"):
        CensoredBayesianCNN(w)
    with pytest.raises(InputDataError, match="n_labels"):
        CensoredBayesianCNN(w, names, n_labels=5)
    with pytest.raises(InputDataError, match="n_pixels"):
        CensoredBayesianCNN(w, names, n_pixels=P + 1)
    with pytest.raises(InputFileError, match="does not exist"):
        CensoredBayesianCNN(tmp_path / "nope.npz")
    np.savez(tmp_path / "w.npz", windows=w, elements=np.array(names))
    with pytest.raises(InputDataError, match="'CU'"):
        CensoredBayesianCNN(tmp_path / "w.npz", ["CU"])
    net = CensoredBayesianCNN(str(tmp_path / "w.npz"), ["ni_fe", "Mg_Fe"], hidden=[8, 8])
    assert net.element_names == ["NI", "MG"]
    assert np.array_equal(net.windows.numpy(), w[[2, 0]])
    w[1] = False
    with pytest.warns(UserWarning, match="AL"):
        empty = CensoredBayesianCNN(w, names, hidden=[8, 8], dropout=0.0).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, _ = empty(torch.randn(2, 1, P))
    assert torch.isfinite(mean).all()


@pytest.mark.shared_data
def test_aspcap_dr14_windows_file(shared_data):
    path = shared_data / "apogee" / "aspcap_element_windows_dr14_7514.npz"
    net = CensoredBayesianCNN(path, ["MG_FE", "AL_FE", "FE_H"], n_labels=6, n_pixels=7514)
    with np.load(path) as f:
        names = list(f["elements"])
        expected = f["windows"][[names.index("Mg"), names.index("Al"), names.index("Fe")]]
    assert np.array_equal(net.windows.numpy(), expected)
    assert net.element_w1.shape == (int(expected.sum()), 32)  # one weight row per window pixel
    mean, log_var = net.eval()(torch.randn(2, 1, 7514))
    assert mean.shape == log_var.shape == (2, 6)


def test_windows_onto_the_network_grid(tmp_path, monkeypatch):
    """Windows on the ASPCAP grid (a file) onto the apStar grid of a raw-flux network: the same
    pixels, gaps False; windows already of the network's length unchanged; a length no APOGEE grid
    has is refused; the instrument's windows by name ("dr14") are found in STARLABELS_REFERENCE_DIR."""
    from starlabels.instruments import get
    from starlabels.models.censored_windows import windows_on_grid
    from starlabels.preprocess.grids import index_in
    from starlabels.training.data_access import TrainingData
    from starlabels.training.from_config import network_kwargs

    apogee = get("apogee")
    aspcap = apogee.get_grid("aspcap")
    w = np.zeros((2, aspcap.n_pixels), bool)
    w[0, 5:9] = w[1, 3000:3100] = True
    path = tmp_path / "win.npz"
    np.savez(path, windows=w, elements=np.array(["Mg", "Al"]))
    on_apstar, names = windows_on_grid(str(path), ["AL_FE"], apogee.grid)
    assert names == ["Al"] and on_apstar.shape == (1, apogee.n_pixels)
    np.testing.assert_array_equal(np.flatnonzero(on_apstar[0]), index_in(aspcap, apogee.grid)[3000:3100])
    same, _ = windows_on_grid(w, ["Mg", "Al"], aspcap)
    np.testing.assert_array_equal(same, w)
    with pytest.raises(InputDataError, match="fit neither"):
        windows_on_grid(np.ones((1, 100), bool), ["Mg"], apogee.grid)
    # by name, through the training config path: raw apStar data, no preprocessing
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(tmp_path))
    ref_name = apogee.element_windows["dr14"].filename
    np.savez(tmp_path / ref_name, windows=w, elements=np.array(["Mg", "Al"]))
    data = TrainingData.from_arrays(np.ones((2, apogee.n_pixels)), np.zeros((2, 5)),
                                    ["TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE"], grid=apogee.grid)
    kw = network_kwargs("bcnn_censored", {"n_labels": 5, "n_pixels": apogee.n_pixels, "windows": "dr14",
                                          "element_names": ["MG_FE", "AL_FE"]}, data, None)
    assert kw["windows"].shape == (2, apogee.n_pixels) and kw["element_names"] == ["Mg", "Al"]
    net = CensoredBayesianCNN(**{**kw, "hidden": [8, 4], "element_hidden": [4, 2]})
    assert net.n_pixels == apogee.n_pixels and net.windows.sum() == 104
