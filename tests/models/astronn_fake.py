"""Hand-made astroNN model folders (the exact astroNN 1.1 / Keras 2 HDF5 layout, written with h5py)
and an independent numpy forward pass with Keras' semantics, for tests that need no TensorFlow.

Keras semantics re-typed here, not taken from starlabels: channels-last tensors, Conv1D kernel
(k, in, out) with TF "same" padding (⌊(k−1)/2⌋ left, the rest right), MaxPooling1D "valid",
Flatten of (length, channel) length-major, Dense kernel (in, out), BoolMask = the in-window pixels
in ascending order, Concatenate on the last axis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

P = 64  # pixels of the fake spectra
FILTERS, KERNEL, POOL, HIDDEN = (2, 4), 8, 4, (12, 6)


def _layer(cls: str, name: str, inputs: list[str], **config: Any) -> dict[str, Any]:
    return {
        "class_name": cls,
        "name": name,
        "config": {"name": name, **config},
        "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]] if inputs else [],
    }


class FakeModel:
    """Layers + weights of a fake astroNN network; ``write(folder)`` makes the astroNN folder."""

    def __init__(self, model_id: str, rng: np.random.Generator):
        self.id = model_id
        self.rng = rng
        self.layers: list[dict[str, Any]] = [
            _layer("InputLayer", "input", [], batch_input_shape=[None, P, 1])
        ]
        self.weights: dict[str, dict[str, np.ndarray]] = {}

    def add(
        self, cls: str, name: str, inputs: list[str], kernel: tuple[int, ...] | None = None, **config: Any
    ) -> str:
        self.layers.append(_layer(cls, name, inputs, **config))
        if kernel is not None:
            self.weights[name] = {
                "kernel": self.rng.normal(0, 0.3, kernel).astype(np.float32),
                "bias": self.rng.normal(0, 0.1, kernel[-1]).astype(np.float32),
            }
        return name

    def trunk(self) -> str:
        a = self.add(
            "Conv1D",
            "conv1d",
            ["input"],
            (KERNEL, 1, FILTERS[0]),
            filters=FILTERS[0],
            kernel_size=[KERNEL],
            strides=[1],
            padding="same",
            activation="linear",
            use_bias=True,
            dilation_rate=[1],
            data_format="channels_last",
        )
        a = self.add("Activation", "activation", [a], activation="relu")
        a = self.add("MCDropout", "MCDropout_1", [a], rate=0.3)
        a = self.add(
            "Conv1D",
            "conv1d_1",
            [a],
            (KERNEL, FILTERS[0], FILTERS[1]),
            filters=FILTERS[1],
            kernel_size=[KERNEL],
            strides=[1],
            padding="same",
            activation="linear",
            use_bias=True,
            dilation_rate=[1],
            data_format="channels_last",
        )
        a = self.add("Activation", "activation_1", [a], activation="relu")
        a = self.add(
            "MaxPooling1D",
            "max_pooling1d",
            [a],
            pool_size=[POOL],
            strides=[POOL],
            padding="valid",
            data_format="channels_last",
        )
        a = self.add("Flatten", "flatten", [a], data_format="channels_last")
        a = self.add("MCDropout", "MCDropout_2", [a], rate=0.3)
        a = self.add(
            "Dense",
            "dense",
            [a],
            (P // POOL * FILTERS[1], HIDDEN[0]),
            units=HIDDEN[0],
            activation="linear",
            use_bias=True,
        )
        a = self.add("Activation", "activation_2", [a], activation="relu")
        a = self.add("MCDropout", "MCDropout_3", [a], rate=0.3)
        a = self.add(
            "Dense",
            "dense_1",
            [a],
            (HIDDEN[0], HIDDEN[1]),
            units=HIDDEN[1],
            activation="linear",
            use_bias=True,
        )
        return self.add("Activation", "activation_3", [a], activation="relu")

    def write(self, folder: Path, labels: list[str], outputs: list[str], extra: dict | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        n = len(labels)
        rng = np.random.default_rng(5)
        params = {
            "id": self.id,
            "targetname": labels,
            "task": "regression",
            "last_layer_activation": "linear",
            "input": {"input": [P, 1], "input_err": [P, 1], "labels_err": [n, 1]},
            "labels": {"output": n, "variance_output": n},
            "input_mean": {"input": rng.uniform(0.8, 1.0, P).tolist(), "input_err": [0.0]},
            "input_std": {"input": [1.0], "input_err": [1.0]},
            "labels_mean": {"output": rng.normal(0, 1, n).tolist(), "variance_output": [0.0] * n},
            "labels_std": {"output": rng.uniform(0.1, 2.0, n).tolist(), "variance_output": [1.0] * n},
            "input_norm_mode": {"input": "3", "input_err": "3", "labels_err": "3"},
            "labels_norm_mode": {"output": "2", "variance_output": "2"},
            "dropout_rate": 0.3,
            "maxnorm": 0.5,
            "l2": 5e-9,
            "hidden": list(HIDDEN),
            "filternum": list(FILTERS),
            "filterlen": KERNEL,
            "pool_length": POOL,
            "batch_size": 64,
            **(extra or {}),
        }
        (folder / "astroNN_model_parameter.json").write_text(json.dumps(params, indent=4))
        config = {
            "class_name": "Functional",
            "config": {
                "name": "model",
                "layers": [*self.layers, _layer("InputLayer", "labels_err", [])],
                "input_layers": [["input", 0, 0], ["labels_err", 0, 0]],
                "output_layers": [[o, 0, 0] for o in outputs],
            },
        }
        with h5py.File(folder / "model_weights.h5", "w") as f:
            f.attrs["model_config"] = json.dumps(config)
            f.attrs["keras_version"] = "2.13.1"
            f.attrs["backend"] = "tensorflow"
            g = f.create_group("model_weights")
            g.attrs["layer_names"] = np.array([x["name"].encode() for x in config["config"]["layers"]])
            for x in config["config"]["layers"]:
                lg = g.create_group(x["name"])
                w = self.weights.get(x["name"], {})
                lg.attrs["weight_names"] = np.array([f"{x['name']}/{k}:0".encode() for k in w])
                for k, v in w.items():
                    lg.create_dataset(f"{x['name']}/{k}:0", data=v)
        return folder


def fake_bcnn(
    folder: Path, n_labels: int = 3, seed: int = 0, extra: dict | None = None
) -> tuple[Path, FakeModel]:
    """An ApogeeBCNN folder with labels teff, logg, Fe (…)."""
    m = FakeModel("ApogeeBCNN", np.random.default_rng(seed))
    last = m.trunk()
    m.add(
        "Dense", "output", [last], (HIDDEN[1], n_labels), units=n_labels, activation="linear", use_bias=True
    )
    m.add(
        "Dense",
        "variance_output",
        [last],
        (HIDDEN[1], n_labels),
        units=n_labels,
        activation="linear",
        use_bias=True,
    )
    names = ["teff", "logg", "Fe", "Mg", "Al"][:n_labels]
    return m.write(folder, names, ["output", "variance_output"], extra), m


#: fake censored network: elements, their windows on the P pixels, (units 1, units 2)
CENSORED_ELEMENTS = {
    "C": (slice(3, 17), (8, 4)),
    "Mg": (slice(30, 36), (4, 2)),
    "Ti2": (slice(50, 59), (4, 2)),
}
#: astroNN-like output order: main labels and elements mixed (Fe among the elements)
CENSORED_OUTPUT = ["teff", "logg", "C", "Mg", "Fe", "Ti2"]


def fake_windows(path: Path) -> Path:
    names = {"C": "C", "Mg": "Mg", "Ti2": "TiII"}
    w = np.zeros((len(names), P), bool)
    for i, (_el, (sl, _)) in enumerate(CENSORED_ELEMENTS.items()):
        w[i, sl] = True
    np.savez(path, windows=w, elements=np.array(list(names.values())))
    return path


def fake_censored(folder: Path, seed: int = 0) -> tuple[Path, FakeModel]:
    m = FakeModel("ApogeeBCNNCensored", np.random.default_rng(seed))
    last = m.trunk()
    flat = m.add("Flatten", "flatten_in", ["input"])
    main = {}
    for lab in ("teff", "logg", "Fe"):
        main[lab] = m.add(
            "Dense", f"dense_{lab}", [last], (HIDDEN[1], 1), units=1, activation="linear", use_bias=True
        )
    main_var = {
        lab: m.add(
            "Dense", f"dense_{lab}_var", [last], (HIDDEN[1], 1), units=1, activation="linear", use_bias=True
        )
        for lab in ("teff", "logg", "Fe")
    }
    cat = m.add("Concatenate", "concatenate_main", [main["teff"], main["logg"], main["Fe"]], axis=-1)
    stop = m.add("StopGrad", "StopGrad_1", [cat])
    aux = m.add(
        "Dense",
        "aux_fullspec",
        [last],
        (HIDDEN[1], 2),
        units=2,
        activation="linear",
        use_bias=True,
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 0.5, "axis": 0}},
    )
    full = m.add("Concatenate", "concatenate_full", [aux, stop], axis=-1)
    heads, heads_var = {}, {}
    for el, (sl, (u1, u2)) in CENSORED_ELEMENTS.items():
        n_in = sl.stop - sl.start
        x = m.add("BoolMask", f"{el}_Mask", [flat])
        x = m.add("Dense", f"{el.lower()}_dense", [x], (n_in, u1), units=u1, activation="relu", use_bias=True)
        x = m.add("MCDropout", f"MCDropout_{el}_1", [x], rate=0.3)
        x = m.add("Dense", f"{el.lower()}_dense_2", [x], (u1, u2), units=u2, activation="relu", use_bias=True)
        x = m.add("MCDropout", f"MCDropout_{el}_2", [x], rate=0.3)
        c1 = m.add("Concatenate", f"concatenate_{el}", [x, full], axis=-1)
        c2 = m.add("Concatenate", f"concatenate_{el}_var", [x, full], axis=-1)
        heads[el] = m.add(
            "Dense", f"{el.lower()}_concat", [c1], (u2 + 5, 1), units=1, activation="linear", use_bias=True
        )
        heads_var[el] = m.add(
            "Dense",
            f"{el.lower()}_concat_var",
            [c2],
            (u2 + 5, 1),
            units=1,
            activation="linear",
            use_bias=True,
        )
    m.add("Concatenate", "output", [main.get(k) or heads[k] for k in CENSORED_OUTPUT], axis=-1)
    m.add(
        "Concatenate", "variance_output", [main_var.get(k) or heads_var[k] for k in CENSORED_OUTPUT], axis=-1
    )
    return m.write(folder, CENSORED_OUTPUT, ["output", "variance_output"]), m


# ------------------------------------------------------------------------------------------
# numpy forward pass, Keras semantics


def _conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (N, L, C_in), k (K, C_in, C_out) → (N, L, C_out), TF 'same' padding."""
    K = k.shape[0]
    left = (K - 1) // 2
    xp = np.pad(x, ((0, 0), (left, K - 1 - left), (0, 0)))
    L = x.shape[1]
    out = np.zeros((x.shape[0], L, k.shape[2]))
    for j in range(K):
        out += xp[:, j : j + L, :] @ k[j]
    return out + b


def keras_forward(m: FakeModel, x: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) astroNN input (before normalisation) → (mean, log_var) in *normalised* label units,
    every output in the folder's ``output`` order."""
    w = m.weights
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    h = (x - np.asarray(params["input_mean"]["input"]))[:, :, None]
    h = relu(_conv_same(h, w["conv1d"]["kernel"], w["conv1d"]["bias"]))
    h = relu(_conv_same(h, w["conv1d_1"]["kernel"], w["conv1d_1"]["bias"]))
    n, L, C = h.shape
    h = h[:, : L // POOL * POOL].reshape(n, L // POOL, POOL, C).max(axis=2)
    h = h.reshape(n, -1)  # length-major
    h = relu(h @ w["dense"]["kernel"] + w["dense"]["bias"])
    last = relu(h @ w["dense_1"]["kernel"] + w["dense_1"]["bias"])
    dense = lambda name, a: a @ w[name]["kernel"] + w[name]["bias"]  # noqa: E731
    if m.id == "ApogeeBCNN":
        return dense("output", last), dense("variance_output", last)
    main = {lab: dense(f"dense_{lab}", last) for lab in ("teff", "logg", "Fe")}
    main_var = {lab: dense(f"dense_{lab}_var", last) for lab in ("teff", "logg", "Fe")}
    full = np.concatenate([dense("aux_fullspec", last), main["teff"], main["logg"], main["Fe"]], axis=1)
    xin = x - np.asarray(params["input_mean"]["input"])
    out, var = [], []
    for lab in CENSORED_OUTPUT:
        if lab in main:
            out.append(main[lab])
            var.append(main_var[lab])
            continue
        sl = CENSORED_ELEMENTS[lab][0]
        a = relu(dense(f"{lab.lower()}_dense", xin[:, sl]))
        a = relu(dense(f"{lab.lower()}_dense_2", a))
        c = np.concatenate([a, full], axis=1)
        out.append(dense(f"{lab.lower()}_concat", c))
        var.append(dense(f"{lab.lower()}_concat_var", c))
    return np.concatenate(out, axis=1), np.concatenate(var, axis=1)
