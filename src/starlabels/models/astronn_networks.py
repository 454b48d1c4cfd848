"""Map astroNN's Keras layers onto starlabels' networks (used by :mod:`starlabels.models.astronn_import`).

Both networks share the convolutional trunk (:func:`read_trunk`): Conv1D → ReLU → MCDropout →
Conv1D → ReLU → MaxPooling1D → Flatten → MCDropout → Dense → ReLU → MCDropout → Dense → ReLU,
each layer checked (padding "same", stride 1, linear Dense + separate ReLU, one dropout rate).
Keras kernels are channels-last: Conv1D (k, in, out) → torch (out, in, k); Dense (in, out) →
(out, in); and the first Dense after ``Flatten`` reads (length, channel) length-major, so its rows
are permuted to torch's channel-major flatten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from starlabels.errors import ModelFormatError
from starlabels.models.astronn_keras import AstroNNFolder, KerasGraph, KerasLayer

__all__ = ["ALIASES", "build_bcnn", "build_censored", "n_pixels_of", "read_trunk"]

#: astroNN element names whose window is stored under another name (``aspcap_mask``).
ALIASES = {"c1": "ci", "ti2": "tiii"}


def read_trunk(graph: KerasGraph) -> dict[str, Any]:
    """The convolutional trunk shared by both networks, checked layer by layer."""
    if "input" not in graph.layers:
        raise ModelFormatError(f"{graph.path}: the model has no layer called 'input'")
    conv1, act1, drop1, conv2, act2, pool, _flatten, drop2, dense1, act3, drop3, dense2, act4 = graph.chain(
        "input", ("Conv1D", "Activation", "MCDropout", "Conv1D", "Activation", "MaxPooling1D", "Flatten",
                  "MCDropout", "Dense", "Activation", "MCDropout", "Dense", "Activation"),
    )
    for conv in (conv1, conv2):
        graph.check(
            conv,
            padding="same",
            strides=1,
            dilation_rate=1,
            activation="linear",
            use_bias=True,
            data_format="channels_last",
        )
    for act in (act1, act2, act3, act4):
        graph.check(act, activation="relu")
    for dense in (dense1, dense2):
        graph.check(dense, activation="linear", use_bias=True)
    graph.check(pool, padding="valid", data_format="channels_last")
    pool_size = int(np.ravel(pool.config.get("pool_size", [0]))[0])
    graph.check(pool, strides=pool_size)
    rates = {float(d.config.get("rate", -1)) for d in (drop1, drop2, drop3)}
    return {
        "conv": (conv1, conv2),
        "dense": (dense1, dense2),
        "pool": pool_size,
        "rates": rates,
        "last": act4,
    }


def n_pixels_of(af: AstroNNFolder) -> int:
    """The network input length P from the JSON's ``input`` shape."""
    shape = af.parameters.get("input")
    if isinstance(shape, dict):
        shape = shape.get("input")
    try:
        return int(np.ravel(shape)[0])
    except (TypeError, ValueError, IndexError):
        raise ModelFormatError(
            f"{af.folder}: cannot read the input length from 'input' = {shape!r}"
        ) from None


@torch.no_grad()
def _set(param: torch.Tensor, value: np.ndarray, what: str, graph: KerasGraph) -> None:
    if tuple(param.shape) != value.shape:
        raise ModelFormatError(
            f"{graph.path}: {what}: shape {value.shape}, the network needs {tuple(param.shape)}"
        )
    param.copy_(torch.as_tensor(value, dtype=param.dtype))


def _load_trunk(net: Any, graph: KerasGraph, trunk: dict[str, Any], n_pixels: int) -> None:
    convs = [m for m in net.trunk if isinstance(m, torch.nn.Conv1d)]
    linears = [m for m in net.trunk if isinstance(m, torch.nn.Linear)]
    for layer, conv in zip(trunk["conv"], convs, strict=True):
        k, b = graph.kernel(layer, (conv.kernel_size[0], conv.in_channels, conv.out_channels))
        _set(conv.weight, k.transpose(2, 1, 0), layer.name, graph)
        _set(conv.bias, b, layer.name, graph)
    channels, n_pool = convs[-1].out_channels, n_pixels // trunk["pool"]
    d1, d2 = trunk["dense"]
    k, b = graph.kernel(d1, (n_pool * channels, linears[0].out_features))
    # Keras flattens (length, channel) length-major; torch flattens (channel, length) channel-major
    k = k.reshape(n_pool, channels, -1).transpose(1, 0, 2).reshape(channels * n_pool, -1)
    _set(linears[0].weight, k.T, d1.name, graph)
    _set(linears[0].bias, b, d1.name, graph)
    k, b = graph.kernel(d2, (linears[0].out_features, linears[1].out_features))
    _set(linears[1].weight, k.T, d2.name, graph)
    _set(linears[1].bias, b, d2.name, graph)


def _trunk_kwargs(graph: KerasGraph, trunk: dict[str, Any], dropout: float) -> dict[str, Any]:
    conv1, conv2 = trunk["conv"]
    d1, d2 = trunk["dense"]
    ks = {int(np.ravel(c.config.get("kernel_size"))[0]) for c in (conv1, conv2)}
    if len(ks) != 1:
        raise ModelFormatError(
            f"{graph.path}: layers {conv1.name!r}, {conv2.name!r} differ in kernel size {ks}"
        )
    return {
        "dropout": dropout,
        "filters": [int(conv1.config["filters"]), int(conv2.config["filters"])],
        "kernel_size": ks.pop(),
        "pool": trunk["pool"],
        "hidden": [int(d1.config["units"]), int(d2.config["units"])],
    }


# ------------------------------------------------------------------------------------------
# the two networks


def _dense_head(graph: KerasGraph, name: str, source: str, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    layer = graph[name]
    if layer.class_name != "Dense" or layer.inputs != [source]:
        raise ModelFormatError(f"{graph.path}: layer {name!r} should be a Dense layer reading {source!r}")
    graph.check(layer, activation="linear", use_bias=True)
    return graph.kernel(layer, (n_in, None))


def build_bcnn(af: AstroNNFolder, trunk: dict[str, Any], dropout: float, n_pixels: int) -> Any:
    """astroNN ``ApogeeBCNN`` → :class:`~starlabels.models.bcnn.BayesianCNN` with its weights."""
    from starlabels.models.bcnn import BayesianCNN

    graph = af.graph
    if len(graph.output_names) != 2:
        raise ModelFormatError(
            f"{graph.path}: expected outputs (output, variance_output), got {graph.output_names}"
        )
    kw = _trunk_kwargs(graph, trunk, dropout)
    last = trunk["last"].name
    km, bm = _dense_head(graph, graph.output_names[0], last, kw["hidden"][-1])
    kv, bv = _dense_head(graph, graph.output_names[1], last, kw["hidden"][-1])
    if kv.shape != km.shape:
        raise ModelFormatError(
            f"{graph.path}: layer {graph.output_names[1]!r} has {kv.shape[1]} outputs, "
            f"{graph.output_names[0]!r} {km.shape[1]}"
        )
    net = BayesianCNN(n_labels=km.shape[1], n_pixels=n_pixels, **kw)
    _load_trunk(net, graph, trunk, n_pixels)
    for head, k, b, name in (
        (net.mean_head, km, bm, graph.output_names[0]),
        (net.log_var_head, kv, bv, graph.output_names[1]),
    ):
        _set(head.weight, k.T, name, graph)
        _set(head.bias, b, name, graph)
    return net


def _element_branch(graph: KerasGraph, head: KerasLayer, fullspec: str) -> dict[str, Any]:
    """An element output ``Dense(1)`` ← concat[MCDropout ← Dense ← MCDropout ← Dense ← BoolMask, fullspec]."""
    concat = graph.input_of(head, "Concatenate")
    if len(concat.inputs) != 2 or concat.inputs[1] != fullspec:
        raise ModelFormatError(
            f"{graph.path}: layer {concat.name!r} should join an element branch and "
            f"{fullspec!r}, joins {concat.inputs}"
        )
    drop2 = graph.input_of(concat, "MCDropout")
    dense2 = graph.input_of(drop2, "Dense")
    drop1 = graph.input_of(dense2, "MCDropout")
    dense1 = graph.input_of(drop1, "Dense")
    mask = graph.input_of(dense1, "BoolMask")
    for d in (dense1, dense2):
        graph.check(d, activation="relu", use_bias=True)
    graph.check(head, activation="linear", use_bias=True)
    if not mask.name.endswith("_Mask"):
        raise ModelFormatError(
            f"{graph.path}: BoolMask layer {mask.name!r} does not name its element (<X>_Mask)"
        )
    return {
        "element": mask.name[: -len("_Mask")],
        "dense": (dense1, dense2),
        "drop": drop2.name,
        "rates": {float(drop1.config.get("rate", -1)), float(drop2.config.get("rate", -1))},
    }


def build_censored(
    af: AstroNNFolder,
    trunk: dict[str, Any],
    dropout: float,
    n_pixels: int,
    table: dict[str, np.ndarray],
    windows_source: Any,
) -> Any:
    """astroNN ``ApogeeBCNNCensored`` → :class:`~starlabels.models.censored.CensoredBayesianCNN`.

    ``table`` maps lower-case astroNN element names (``c``, ``ci``, ``tiii``…) to (P,) windows
    (read from ``windows_source``, named in errors).
    """
    from starlabels.models.censored import CensoredBayesianCNN

    graph = af.graph
    kw = _trunk_kwargs(graph, trunk, dropout)
    last = trunk["last"].name
    out, var = graph[graph.output_names[0]], graph[graph.output_names[1]]
    if (
        out.class_name != "Concatenate"
        or var.class_name != "Concatenate"
        or len(out.inputs) != len(var.inputs)
    ):
        raise ModelFormatError(
            f"{graph.path}: outputs {out.name!r}/{var.name!r} should be concatenations of equal length"
        )
    stops = [x for x in graph.layers.values() if x.class_name == "StopGrad"]
    if len(stops) != 1:
        raise ModelFormatError(f"{graph.path}: expected one StopGrad layer, found {[x.name for x in stops]}")
    main_order = graph.input_of(stops[0], "Concatenate").inputs  # bridge order of the main labels
    fullspec = graph.consumer(stops[0].name, "Concatenate")
    if len(fullspec.inputs) != 2 or fullspec.inputs[1] != stops[0].name:
        raise ModelFormatError(
            f"{graph.path}: layer {fullspec.name!r} should join the latent layer and "
            f"{stops[0].name!r}, joins {fullspec.inputs}"
        )
    latent = graph.input_of(fullspec, "Dense")
    if latent.inputs != [last]:
        raise ModelFormatError(f"{graph.path}: latent layer {latent.name!r} should read {last!r}")
    constraint = latent.config.get("kernel_constraint") or {}
    if constraint.get("class_name") != "MaxNorm" or int(constraint.get("config", {}).get("axis", 0)) != 0:
        raise ModelFormatError(
            f"{graph.path}: latent layer {latent.name!r} should have a MaxNorm(axis=0) "
            f"constraint, has {constraint!r}"
        )
    max_norm = float(constraint["config"].get("max_value", af.parameters.get("maxnorm") or 0.5))
    n_main, n_latent, h = len(main_order), int(latent.config["units"]), kw["hidden"][-1]
    main_pos: dict[str, int] = {}
    branches: list[tuple[int, dict[str, Any]]] = []
    for pos, name in enumerate(out.inputs):
        if name in main_order:
            main_pos[name] = pos
        else:
            branches.append((pos, _element_branch(graph, graph[name], fullspec.name)))
    if set(main_pos) != set(main_order):
        raise ModelFormatError(f"{graph.path}: main outputs {main_order} are not all in {out.name!r}")
    for _pos, br in branches:
        if br["rates"] != {dropout}:
            raise ModelFormatError(
                f"{graph.path}: element {br['element']} has dropout {br['rates']}, the trunk {dropout}"
            )
    names = [br["element"] for _, br in branches]
    rows = []
    for name, (_, br) in zip(names, branches, strict=True):
        key = ALIASES.get(name.lower(), name.lower())
        if key not in table:
            raise ModelFormatError(f"{graph.path}: no window for element {name!r} in {windows_source}")
        w = np.asarray(table[key], bool)
        n_in = graph.kernel(br["dense"][0], (None, None))[0].shape[0]
        if w.shape != (n_pixels,) or int(w.sum()) != n_in:
            raise ModelFormatError(
                f"{graph.path}: layer {br['dense'][0].name!r} reads {n_in} pixels but the {name} window "
                f"of {windows_source} has {int(w.sum())} (of {w.shape[0]})"
            )
        rows.append(w)
    h1 = max(int(br["dense"][0].config["units"]) for _, br in branches)
    h2 = max(int(br["dense"][1].config["units"]) for _, br in branches)
    order = [0] * len(out.inputs)
    for i, name in enumerate(main_order):
        order[main_pos[name]] = i
    for e, (pos, _) in enumerate(branches):
        order[pos] = n_main + e
    net = CensoredBayesianCNN(
        windows=np.array(rows),
        element_names=names,
        n_main_labels=n_main,
        element_hidden=(h1, h2),
        n_latent=n_latent,
        max_norm=max_norm,
        latent_stop_grad=False,
        output_order=order,
        **kw,
    )
    _load_trunk(net, graph, trunk, n_pixels)
    with torch.no_grad():
        for p in (
            net.element_w1,
            net.element_b1,
            net.element_w2,
            net.element_b2,
            net.element_w_out,
            net.element_w_bridge,
            net.element_b_out,
        ):
            p.zero_()
    main_k = np.zeros((2, h, n_main))
    main_b = np.zeros((2, n_main))
    for i, name in enumerate(main_order):
        pos = main_pos[name]
        for j, src in enumerate((out.inputs[pos], var.inputs[pos])):
            k, b = _dense_head(graph, src, last, h)
            main_k[j, :, i], main_b[j, i] = k[:, 0], b[0]
    for j, head in enumerate((net.main_mean, net.main_log_var)):
        _set(head.weight, main_k[j].T, f"{out.name}/{var.name} main heads", graph)
        _set(head.bias, main_b[j], f"{out.name}/{var.name} main heads", graph)
    k, b = graph.kernel(latent, (h, n_latent))
    _set(net.latent.weight, k.T, latent.name, graph)
    _set(net.latent.bias, b, latent.name, graph)
    w1 = net.element_w1.detach().numpy().copy()
    start = 0
    with torch.no_grad():
        for e, (pos, br) in enumerate(branches):
            d1, d2 = br["dense"]
            k1, b1 = graph.kernel(d1, (int(rows[e].sum()), None))
            u1 = k1.shape[1]
            k2, b2 = graph.kernel(d2, (u1, None))
            u2 = k2.shape[1]
            w1[start : start + k1.shape[0], :u1] = k1
            start += k1.shape[0]
            net.element_b1[e, :u1] = torch.from_numpy(b1)
            net.element_w2[e, :u1, :u2] = torch.from_numpy(k2)
            net.element_b2[e, :u2] = torch.from_numpy(b2)
            for j, head in enumerate((graph[out.inputs[pos]], graph[var.inputs[pos]])):
                branch = _element_branch(graph, head, fullspec.name)
                if branch["drop"] != br["drop"]:
                    raise ModelFormatError(
                        f"{graph.path}: layer {head.name!r} reads another branch than {out.inputs[pos]!r}"
                    )
                ko, bo = graph.kernel(head, (u2 + n_latent + n_main, 1))
                net.element_w_out[e, :u2, j] = torch.from_numpy(ko[:u2, 0])
                net.element_w_bridge[e, :, j] = torch.from_numpy(ko[u2:, 0])
                net.element_b_out[e, j] = float(bo[0])
        _set(net.element_w1, w1, "element layers", graph)
    return net
