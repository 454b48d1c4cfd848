"""Censored Bayesian CNN: astroNN's ``ApogeeBCNNCensored`` (Leung & Bovy 2019, §3–4, Fig. 6).

Two parts trained together:

* **Main branch** — the :func:`~starlabels.models.bcnn.bcnn_trunk` on the full spectrum (conv 2 → 4,
  k = 8, max-pool 4, dense 192 → 96) with mean and log-variance heads for the ``n_main_labels``
  main labels (TEFF, LOGG, FE_H).
* **Element networks** — one per element, on the spectrum *censored* to that element's ASPCAP
  windows (only in-window pixels enter; astroNN's ``BoolMask``): dense ``element_hidden[0]`` → ReLU →
  dropout → dense ``element_hidden[1]`` → ReLU → dropout, then mean and log-variance units that also
  see the 5-number *bridge* from the main branch: ``n_latent`` (= 2) latent neurons computed from the
  main branch's last hidden layer by a linear layer whose weights obey :class:`MaxNorm` (‖w‖₂ ≤ δ per
  latent unit), and the main label means through :class:`StopGrad`.

Gradients: the main means enter the element networks through ``StopGrad`` and (by default,
``latent_stop_grad=True``) so does the hidden layer the latent neurons read, so an abundance loss
never changes a main-branch parameter — the latent layer itself is trained by the abundance losses
only. (astroNN lets abundance gradients reach the main trunk through its latent layer; pass
``latent_stop_grad=False`` for that behaviour.) An element's output depends on pixels outside its
windows only through the bridge.

The element networks are evaluated batched rather than in a Python loop over elements. The first
layer's weights are stored flat, one row per (element, in-window pixel) — exactly the parameters of
astroNN's per-element dense layers. Because window sizes differ by three orders of magnitude (DR14:
C 3806 pixels … Nd 2), elements are grouped into size classes within a factor 2 (9 classes for the
26 DR14 windows); each class is one gather + one ``bmm`` over its elements, padded with an exact zero
pixel/weight. The later layers are single einsums over all elements. Measured on CPU (1 thread,
batch 64, 26 DR14 windows, element part only, forward + backward): size classes 4.9 ms, a loop over
elements 7.6–10 ms, one dense masked (union-pixels × E·32) matmul 80 ms (it multiplies zeros).

Differences from astroNN v1: every element uses the same ``element_hidden`` sizes (astroNN gives C
and N 8× / 4× wider layers); outputs are the main labels first, then the elements in the order given,
unless ``output_order`` permutes them (astroNN puts [Fe/H] among the elements, after Mn).
An astroNN network is represented exactly by :func:`starlabels.models.astronn_import.from_astronn`:
wider layers for every element with the extra units' weights zero, and ``output_order``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from starlabels.errors import InputDataError
from starlabels.models.bcnn import ASTRONN_L2, bcnn_trunk, check_dropout
from starlabels.models.censored_windows import (
    WindowsLike,
    check_element_labels,
    element_key,
    ranges_to_windows,
    resolve_windows,
    windows_on_grid,
    windows_to_ranges,
)
from starlabels.models.layers import LabelNetwork, MaxNorm, StopGrad

__all__ = [
    "CensoredBayesianCNN",
    "check_element_labels",
    "element_key",
    "ranges_to_windows",
    "windows_on_grid",
    "windows_to_ranges",
]

#: Elements whose window sizes differ by at most this factor share one batched first-layer matmul.
BUCKET_RATIO = 2


class CensoredBayesianCNN(LabelNetwork):
    """astroNN ``ApogeeBCNNCensored``: main labels from the full spectrum, abundances from windows.

    Parameters
    ----------
    windows:
        Element windows: an (E, P) boolean array/tensor, a path to an .npz with ``windows`` and
        ``elements`` (e.g. APOGEE's ASPCAP DR14 windows file; ``element_names`` then picks
        and orders elements, matched case-insensitively with ``_FE``/``_H`` suffixes ignored, so
        ``["MG_FE", "AL_FE"]`` works), or the ``{"n_pixels", "ranges"}`` dict of :meth:`config`.
        Stored as the buffer ``windows`` (saved with the weights).
    element_names:
        E names (required for an array; optional for a file: default all its elements).
    n_main_labels:
        Main labels predicted by the main branch (TEFF, LOGG, FE_H → 3).
    dropout, filters, kernel_size, pool, hidden:
        Main branch, as :class:`~starlabels.models.bcnn.BayesianCNN` (astroNN: hidden 192, 96).
    element_hidden:
        Sizes of the two dense layers of every element network (astroNN: 32, 16).
    n_latent:
        Latent neurons from the main branch to the element networks (astroNN: 2).
    max_norm:
        δ of the latent layer's :class:`MaxNorm` constraint (astroNN: 0.5).
    latent_stop_grad:
        Block abundance gradients from reaching the main trunk through the latent layer (default).
    n_labels, n_pixels:
        Optional, checked against ``n_main_labels + E`` and the windows' P (the trainer passes them).
    output_order:
        Optional permutation of ``range(n_main_labels + E)``: output column j is internal label
        ``output_order[j]`` (internal order: main labels, then the elements). ``None`` (default):
        no reordering.

    ``forward(x)``: (N, 1, P) → ``(mean, log_var)``, each (N, n_main_labels + E): main labels first,
    then the elements in order (or as ``output_order`` says), standardised label space.
    """

    name: ClassVar[str] = "bcnn_censored"
    has_variance: ClassVar[bool] = True
    recommended_weight_decay: ClassVar[float] = 2 * ASTRONN_L2

    def __init__(
        self,
        windows: WindowsLike,
        element_names: Sequence[str] | None = None,
        n_main_labels: int = 3,
        dropout: float = 0.3,
        filters: Sequence[int] = (2, 4),
        kernel_size: int = 8,
        pool: int = 4,
        hidden: Sequence[int] = (192, 96),
        element_hidden: Sequence[int] = (32, 16),
        n_latent: int = 2,
        max_norm: float = 0.5,
        latent_stop_grad: bool = True,
        n_labels: int | None = None,
        n_pixels: int | None = None,
        output_order: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        w, names = resolve_windows(windows, element_names)
        n_el, P = w.shape
        if n_el < 1:
            raise InputDataError("CensoredBayesianCNN needs at least one element window")
        if n_main_labels < 1:
            raise ValueError(f"n_main_labels must be >= 1, got {n_main_labels}")
        if n_pixels is not None and int(n_pixels) != P:
            raise InputDataError(f"n_pixels={n_pixels} but the element windows have {P} pixels")
        if n_labels is not None and int(n_labels) != n_main_labels + n_el:
            raise InputDataError(
                f"n_labels={n_labels} but n_main_labels + elements = {n_main_labels} + {n_el}"
            )
        if len(element_hidden) != 2:
            raise ValueError(f"element_hidden must have 2 entries, got {list(element_hidden)}")
        empty = [n for n, row in zip(names, w, strict=True) if not row.any()]
        if empty:
            warnings.warn(
                f"element window(s) {empty} contain no pixels: those outputs depend on the main "
                "branch only",
                stacklevel=2,
            )
        self.element_names = names
        self.n_main_labels = int(n_main_labels)
        self.n_elements = int(n_el)
        self.n_labels = self.n_main_labels + self.n_elements
        self.n_pixels = int(P)
        self.dropout = check_dropout(dropout, "CensoredBayesianCNN")
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.pool = int(pool)
        self.hidden = [int(h) for h in hidden]
        self.element_hidden = [int(h) for h in element_hidden]
        self.n_latent = int(n_latent)
        self.max_norm = float(max_norm)
        self.latent_stop_grad = bool(latent_stop_grad)
        self.output_order: list[int] | None = None
        if output_order is not None:
            order = [int(i) for i in output_order]
            if sorted(order) != list(range(self.n_labels)):
                raise InputDataError(
                    f"output_order must be a permutation of range({self.n_labels}), got {order}"
                )
            self.output_order = order
            self.register_buffer("_output_index", torch.tensor(order), persistent=False)

        # --- main branch ------------------------------------------------------------------------
        self.trunk = bcnn_trunk(
            P, self.filters, self.kernel_size, self.pool, self.hidden, self.dropout
        )
        self.main_mean = nn.Linear(self.hidden[-1], self.n_main_labels)
        self.main_log_var = nn.Linear(self.hidden[-1], self.n_main_labels)

        # --- bridge: latent neurons (max-norm) + main means, both without gradient to the trunk ---
        self.latent_input_stop = StopGrad(enabled=self.latent_stop_grad)
        self.latent = nn.Linear(self.hidden[-1], self.n_latent)
        self.latent_constraint = MaxNorm(self.max_norm)
        self.main_stop = StopGrad()
        n_bridge = self.n_latent + self.n_main_labels

        # --- element networks, batched --------------------------------------------------------
        self.register_buffer("windows", torch.from_numpy(w.copy()))
        self._setup_buckets(w)
        h1, h2 = self.element_hidden
        #: first-layer weights, one row per (element, in-window pixel): (n_window_pixels, h1)
        self.element_w1 = nn.Parameter(torch.empty(int(w.sum()), h1))
        self.element_b1 = nn.Parameter(torch.empty(n_el, h1))
        self.element_w2 = nn.Parameter(torch.empty(n_el, h1, h2))
        self.element_b2 = nn.Parameter(torch.empty(n_el, h2))
        #: output units (mean, log_var) from the element's hidden layer and from the bridge
        self.element_w_out = nn.Parameter(torch.empty(n_el, h2, 2))
        self.element_w_bridge = nn.Parameter(torch.empty(n_el, n_bridge, 2))
        self.element_b_out = nn.Parameter(torch.empty(n_el, 2))
        self.element_dropout1 = nn.Dropout(self.dropout)
        self.element_dropout2 = nn.Dropout(self.dropout)
        self._init_element_weights(w.sum(axis=1))
        self.apply_constraints()

    def _setup_buckets(self, w: np.ndarray) -> None:
        """Index buffers for the first element layer, grouped in size classes ("buckets").

        ``element_w1`` holds one row per (element, in-window pixel), grouped by element in window
        order. Elements are sorted by window size and cut into buckets whose sizes differ by at most
        a factor :data:`BUCKET_RATIO`; each bucket is computed by one gather and one batched matmul,
        its shorter windows padded with a zero pixel (index P) and a zero weight row (index S).
        """
        P = w.shape[1]
        sizes = w.sum(axis=1)
        S = int(sizes.sum())
        _, pix_idx = np.nonzero(w)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        buckets: list[list[int]] = []
        for e in np.argsort(-sizes, kind="stable"):
            if not buckets or sizes[e] * BUCKET_RATIO < sizes[buckets[-1][0]]:
                buckets.append([])
            buckets[-1].append(int(e))
        pixels, rows, shapes, offset = [], [], [], 0
        for b in buckets:
            width = max(1, int(sizes[b].max()))
            bp = np.full((len(b), width), P, dtype=np.int64)
            br = np.full((len(b), width), S, dtype=np.int64)
            for i, e in enumerate(b):
                bp[i, : sizes[e]] = pix_idx[starts[e] : starts[e + 1]]
                br[i, : sizes[e]] = np.arange(starts[e], starts[e + 1])
            pixels.append(bp.ravel())
            rows.append(br.ravel())
            shapes.append((offset, len(b), width))
            offset += len(b) * width
        order = np.concatenate([np.asarray(b, dtype=np.int64) for b in buckets])
        self._bucket_shapes = shapes
        self.register_buffer("_bucket_pixels", torch.from_numpy(np.concatenate(pixels)), persistent=False)
        self.register_buffer("_bucket_rows", torch.from_numpy(np.concatenate(rows)), persistent=False)
        self.register_buffer("_element_inv", torch.from_numpy(np.argsort(order)), persistent=False)

    @torch.no_grad()
    def _init_element_weights(self, window_sizes: np.ndarray) -> None:
        """As ``nn.Linear`` per element: U(±1/√fan_in) for weights and biases."""
        sizes = torch.as_tensor(np.maximum(window_sizes, 1), dtype=torch.float32)
        bound1 = sizes.rsqrt()  # (E,)
        row_bound = bound1.repeat_interleave(torch.as_tensor(window_sizes, dtype=torch.long))
        self.element_w1.uniform_(-1, 1).mul_(row_bound.unsqueeze(1))
        self.element_b1.uniform_(-1, 1).mul_(bound1.unsqueeze(1))
        h1, h2 = self.element_hidden
        for p, fan_in in (
            (self.element_w2, h1),
            (self.element_b2, h1),
            (self.element_w_out, h2 + self.element_w_bridge.shape[1]),
            (self.element_w_bridge, h2 + self.element_w_bridge.shape[1]),
            (self.element_b_out, h2 + self.element_w_bridge.shape[1]),
        ):
            bound = 1.0 / math.sqrt(fan_in)
            p.uniform_(-bound, bound)

    # ------------------------------------------------------------------------------------------
    def main_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Main branch: (N, 1, P) → (mean (N, M), log_var (N, M), last hidden layer (N, hidden[-1]))."""
        h = self.trunk(x)
        return self.main_mean(h), self.main_log_var(h), h

    def bridge(self, hidden: torch.Tensor, main_mean: torch.Tensor) -> torch.Tensor:
        """What the element networks see of the main branch: (N, n_latent + M) =
        [latent(StopGrad(hidden)), StopGrad(main_mean)]."""
        return torch.cat([self.latent(self.latent_input_stop(hidden)), self.main_stop(main_mean)], dim=1)

    def element_forward(
        self, x: torch.Tensor, bridge: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Element networks for all elements at once: x (N, 1, P), bridge (N, B) → (mean, log_var),
        each (N, E). Element e's first layer reads only the pixels of e's windows."""
        n = x.shape[0]
        h1 = self.element_hidden[0]
        xe = torch.cat([x.reshape(n, self.n_pixels), x.new_zeros(n, 1)], dim=1)  # (N, P+1)
        we = torch.cat([self.element_w1, self.element_w1.new_zeros(1, h1)], dim=0)  # (S+1, h1)
        parts = []
        for offset, n_b, width in self._bucket_shapes:
            pix = self._bucket_pixels[offset : offset + n_b * width]
            rows = self._bucket_rows[offset : offset + n_b * width]
            xg = xe.index_select(1, pix).view(n, n_b, width).transpose(0, 1)  # (E_b, N, W_b)
            parts.append(torch.bmm(xg, we.index_select(0, rows).view(n_b, width, h1)))
        z1 = torch.cat(parts, dim=0).index_select(0, self._element_inv).transpose(0, 1)  # (N, E, h1)
        a1 = self.element_dropout1(torch.relu(z1 + self.element_b1))
        z2 = torch.einsum("neh,ehk->nek", a1, self.element_w2) + self.element_b2
        a2 = self.element_dropout2(torch.relu(z2))
        out = (
            torch.einsum("nek,eko->neo", a2, self.element_w_out)
            + torch.einsum("nb,ebo->neo", bridge, self.element_w_bridge)
            + self.element_b_out
        )
        return out[..., 0], out[..., 1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, P) → ``(mean, log_var)``, each (N, n_main_labels + E), standardised space."""
        self.check_input(x)
        main_mean, main_log_var, h = self.main_forward(x)
        el_mean, el_log_var = self.element_forward(x, self.bridge(h, main_mean))
        mean = torch.cat([main_mean, el_mean], dim=1)
        log_var = torch.cat([main_log_var, el_log_var], dim=1)
        if self.output_order is None:
            return mean, log_var
        return mean.index_select(1, self._output_index), log_var.index_select(1, self._output_index)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P) → (N, hidden[-1]): the main branch's last hidden layer."""
        self.check_input(x)
        return self.trunk(x)

    def apply_constraints(self) -> None:
        """Max-norm on the latent layer: ‖w_j‖₂ ≤ ``max_norm`` for each latent unit j."""
        self.latent_constraint(self.latent.weight)

    # ------------------------------------------------------------------------------------------
    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters of the main branch (trunk and main heads): never trained by abundance losses."""
        return [
            *self.trunk.parameters(),
            *self.main_mean.parameters(),
            *self.main_log_var.parameters(),
        ]

    def config(self) -> dict[str, Any]:
        extra = {} if self.output_order is None else {"output_order": list(self.output_order)}
        return {
            "windows": {
                "n_pixels": self.n_pixels,
                "ranges": windows_to_ranges(self.windows.cpu().numpy()),
            },
            "element_names": list(self.element_names),
            "n_main_labels": self.n_main_labels,
            "dropout": self.dropout,
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "pool": self.pool,
            "hidden": list(self.hidden),
            "element_hidden": list(self.element_hidden),
            "n_latent": self.n_latent,
            "max_norm": self.max_norm,
            "latent_stop_grad": self.latent_stop_grad,
            "n_labels": self.n_labels,
            "n_pixels": self.n_pixels,
            **extra,
        }

    def _load_from_state_dict(  # type: ignore[override]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        key = prefix + "windows"
        if key in state_dict:
            incoming = state_dict[key]
            if incoming.shape != self.windows.shape or not torch.equal(
                incoming.to(self.windows.device, torch.bool), self.windows
            ):
                error_msgs.append(
                    f"{key}: the saved element windows differ from this network's (they define the "
                    "element layers' shapes); build the network from the saved config"
                )
                return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
