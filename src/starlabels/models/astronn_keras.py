"""Read an astroNN model folder without TensorFlow: its JSON parameters and Keras HDF5 weights.

An astroNN (v1.x) model folder, written by ``model.save()``, holds

* ``astroNN_model_parameter.json`` — ``id`` (the model class, e.g. ``ApogeeBCNN``), ``targetname``,
  ``input_mean``/``input_std`` (``{"input": [...]}``), ``labels_mean``/``labels_std``
  (``{"output": [...]}``), ``input_norm_mode``/``labels_norm_mode``, ``dropout_rate``,
  ``maxnorm``, ``hidden``, ``filternum``, ``filterlen``, ``pool_length``, ``task``, ...
* ``model_weights.h5`` — Keras' full-model HDF5 file: attribute ``model_config`` (the JSON layer
  graph: every layer's class, config and the layers it reads) and the group ``model_weights/<layer>``
  whose attribute ``weight_names`` lists its arrays (``<layer>/kernel:0``, ``<layer>/bias:0``).

:class:`KerasGraph` gives the layers by name with their inputs and consumers, so a converter can
follow the network from its input instead of relying on Keras' auto-generated layer names
(``dense_12`` depends on how many layers the session had built before).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError, ModelFormatError

__all__ = ["PARAMETER_FILE", "WEIGHTS_FILE", "AstroNNFolder", "KerasGraph", "KerasLayer", "read_folder"]

PARAMETER_FILE = "astroNN_model_parameter.json"
WEIGHTS_FILE = "model_weights.h5"


@dataclass
class KerasLayer:
    """One layer of the Keras functional graph: class name, config and the layers it reads."""

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: list[str]
    consumers: list[str] = field(default_factory=list)


class KerasGraph:
    """The functional model's layers (from ``model_config``) and their weights (from the HDF5).

    ``weights(name)`` returns the layer's arrays keyed by kind (``"kernel"``, ``"bias"``), read
    when asked; a layer missing from the weights group raises :class:`ModelFormatError` naming it.
    """

    def __init__(self, path: Path, model_config: dict[str, Any], weights: dict[str, dict[str, np.ndarray]]):
        self.path = path
        cfg = model_config.get("config", {})
        layers = cfg.get("layers")
        if not isinstance(layers, list):
            raise ModelFormatError(f"{path}: model_config has no layer list")
        self.layers: dict[str, KerasLayer] = {}
        for entry in layers:
            name = entry.get("name") or entry.get("config", {}).get("name")
            self.layers[name] = KerasLayer(
                name=name,
                class_name=str(entry.get("class_name")),
                config=dict(entry.get("config", {})),
                inputs=_inbound_names(entry.get("inbound_nodes", []), name, path),
            )
        for layer in self.layers.values():
            for src in layer.inputs:
                if src not in self.layers:
                    raise ModelFormatError(f"{path}: layer {layer.name!r} reads unknown layer {src!r}")
                self.layers[src].consumers.append(layer.name)
        self.input_names = [x[0] for x in cfg.get("input_layers", [])]
        self.output_names = [x[0] for x in cfg.get("output_layers", [])]
        self._weights = weights

    def __getitem__(self, name: str) -> KerasLayer:
        try:
            return self.layers[name]
        except KeyError:
            raise ModelFormatError(f"{self.path}: the model has no layer {name!r}") from None

    def weights(self, name: str) -> dict[str, np.ndarray]:
        """``{"kernel": …, "bias": …}`` of layer ``name`` (float64 arrays)."""
        if name not in self._weights or not self._weights[name]:
            raise ModelFormatError(
                f"{self.path}: no weights for layer {name!r} ({self[name].class_name}) in the HDF5 file"
            )
        return self._weights[name]

    def consumer(self, name: str, class_name: str) -> KerasLayer:
        """The one layer of class ``class_name`` reading layer ``name``."""
        found = [self[c] for c in self[name].consumers if self[c].class_name == class_name]
        if len(found) != 1:
            raise ModelFormatError(
                f"{self.path}: expected one {class_name} layer after {name!r}, found "
                f"{[f.name for f in found] or 'none'}"
            )
        return found[0]

    def chain(self, name: str, class_names: Sequence[str]) -> list[KerasLayer]:
        """The layers following layer ``name`` one after the other, of the classes ``class_names``
        in order: each the one :meth:`consumer` of that class of the layer before it."""
        layers: list[KerasLayer] = []
        for class_name in class_names:
            layers.append(self.consumer(layers[-1].name if layers else name, class_name))
        return layers

    def input_of(self, layer: KerasLayer, class_name: str, index: int = 0) -> KerasLayer:
        """Input ``index`` of ``layer``, which must be of class ``class_name``."""
        if len(layer.inputs) <= index or self[layer.inputs[index]].class_name != class_name:
            raise ModelFormatError(
                f"{self.path}: layer {layer.name!r} should read a {class_name} layer, reads {layer.inputs}"
            )
        return self[layer.inputs[index]]

    def check(self, layer: KerasLayer, **expected: Any) -> None:
        """Raise naming the layer unless its config has the ``expected`` values (absent: accepted)."""
        for key, want in expected.items():
            got = layer.config.get(key, want)
            if isinstance(got, (list, tuple)) and not isinstance(want, (list, tuple)) and len(got) == 1:
                got = got[0]
            if got != want:
                raise ModelFormatError(
                    f"{self.path}: layer {layer.name!r} ({layer.class_name}) has {key}={got!r}, only "
                    f"{want!r} is supported"
                )

    def kernel(self, layer: KerasLayer, shape: tuple[int | None, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(kernel, bias)`` of ``layer``; the kernel must have ``shape`` (None: any)."""
        w = self.weights(layer.name)
        if "kernel" not in w or "bias" not in w:
            raise ModelFormatError(f"{self.path}: layer {layer.name!r} lacks kernel or bias ({sorted(w)})")
        k, b = w["kernel"], w["bias"]
        if k.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, k.shape, strict=True)):
            raise ModelFormatError(
                f"{self.path}: layer {layer.name!r} has a kernel of shape {k.shape}, the network "
                f"needs {shape}"
            )
        if b.shape != (k.shape[-1],):
            raise ModelFormatError(f"{self.path}: layer {layer.name!r} has a bias of shape {b.shape}")
        return k, b


def _inbound_names(nodes: Any, name: str, path: Path) -> list[str]:
    """Layer names read by a layer: Keras 2 ``inbound_nodes`` ``[[[name, node, tensor, kwargs], …]]``."""
    if not nodes:
        return []
    if len(nodes) != 1:
        raise ModelFormatError(
            f"{path}: layer {name!r} is called {len(nodes)} times (shared layers are not supported)"
        )
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3 layout
        raise ModelFormatError(f"{path}: layer {name!r}: Keras 3 model files are not supported")
    try:
        return [str(item[0]) for item in node]
    except (TypeError, IndexError):
        raise ModelFormatError(f"{path}: layer {name!r} has unreadable inbound_nodes {node!r}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_weights(group: Any, path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {"kernel": array, "bias": array, …}}`` from a Keras weights group."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in group:
        g = group[layer]
        names = [_text(n) for n in g.attrs.get("weight_names", [])]
        arrays: dict[str, np.ndarray] = {}
        for wname in names:
            if wname not in g:
                raise ModelFormatError(
                    f"{path}: layer {layer!r} lists weight {wname!r} but has no such array"
                )
            kind = wname.rsplit("/", 1)[-1].split(":", 1)[0]
            arrays[kind] = np.asarray(g[wname][()], dtype=np.float64)
        out[str(layer)] = arrays
    return out


@dataclass
class AstroNNFolder:
    """The content of an astroNN model folder: ``parameters`` (the JSON) and ``graph``."""

    folder: Path
    parameters: dict[str, Any]
    graph: KerasGraph
    keras_version: str

    @property
    def model_class(self) -> str:
        return str(self.parameters.get("id"))


def read_folder(folder: str | Path) -> AstroNNFolder:
    """Read ``astroNN_model_parameter.json`` and ``model_weights.h5`` of an astroNN model folder.

    Raises :class:`~starlabels.errors.InputFileError` for a missing folder or file or an
    unreadable one, :class:`~starlabels.errors.ModelFormatError` for a weights file without the
    Keras layer graph.
    """
    import h5py

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "astroNN model folder does not exist")
    pfile = folder / PARAMETER_FILE
    if not pfile.is_file():
        raise InputFileError(pfile, "missing: not an astroNN model folder")
    try:
        parameters = json.loads(pfile.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(pfile, f"not valid JSON: {exc}") from None
    if not isinstance(parameters, dict) or "id" not in parameters:
        raise InputFileError(pfile, "expected a JSON object with the model class under 'id'")
    wfile = folder / WEIGHTS_FILE
    if not wfile.is_file():
        raise InputFileError(wfile, "missing: the astroNN folder has no Keras weights file")
    try:
        with h5py.File(wfile, "r") as h5:
            if "model_config" not in h5.attrs:
                raise ModelFormatError(
                    f"{wfile}: no 'model_config' attribute (written by save_weights?); astroNN's "
                    "save() writes the whole Keras model, which is needed to identify the layers"
                )
            model_config = json.loads(_text(h5.attrs["model_config"]))
            group = h5.get("model_weights", h5)
            weights = _read_weights(group, wfile)
            keras_version = _text(h5.attrs.get("keras_version", "unknown"))
    except OSError as exc:
        raise InputFileError(wfile, f"not a readable HDF5 file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{wfile}: model_config is not valid JSON: {exc}") from None
    return AstroNNFolder(folder, parameters, KerasGraph(wfile, model_config, weights), keras_version)
