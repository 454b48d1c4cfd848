"""The figures' shared style and plumbing: font sizes, resolution, saving, axis styling, log axes,
colour-bar labels, robust axis limits, and reading a catalog column or an array.

Used by :mod:`starlabels.evaluation.plots`, :mod:`starlabels.evaluation.diagnostic_plots`,
:mod:`starlabels.evaluation.fit_plots` and the report's own figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from starlabels.errors import InputDataError
from starlabels.evaluation.columns import TableLike, clean_missing, get_column
from starlabels.evaluation.label_text import axis_label, label_display
from starlabels.units import label_unit

__all__ = ["DPI", "FONT", "ArrayOrColumn", "axis_limits", "color_label", "column_name", "column_values",
           "finish_figure", "get_cmap", "log_axis", "save_figure", "style_axes"]

#: Font sizes (points) used throughout.
FONT = {"label": 12, "tick": 10, "annot": 9, "title": 12, "legend": 9}
#: Resolution of saved figures (dots per inch).
DPI = 150

#: A catalog column name or an (N,) array of values.
ArrayOrColumn = np.ndarray | Sequence[float] | str


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Save ``fig`` (format by suffix, PNG for none), creating parent folders."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def finish_figure(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` to ``path`` when given (:func:`save_figure`); return it."""
    if path is not None:
        save_figure(fig, path)
    return fig


def style_axes(ax: Axes) -> None:
    """The figures' tick and axis-label style: ticks inside on all four sides, :data:`FONT` sizes."""
    ax.tick_params(labelsize=FONT["tick"], direction="in", top=True, right=True, which="both")
    ax.xaxis.label.set_size(FONT["label"])
    ax.yaxis.label.set_size(FONT["label"])


def log_axis(ax: Axes, which: str) -> None:
    """Logarithmic ``which`` (``"x"``/``"y"``) axis with plain-number labels at 1, 2, 5 × 10^k and
    unlabelled minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if which == "x":
        ax.set_xscale("log")
        axis = ax.xaxis
    else:
        ax.set_yscale("log")
        axis = ax.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def column_values(data: TableLike | None, x: ArrayOrColumn | None, what: str) -> np.ndarray | None:
    """Column ``x`` of ``data`` or the array ``x`` itself, as float with MISSING → NaN."""
    if x is None:
        return None
    if isinstance(x, str):
        if data is None:
            raise InputDataError(f"{what}: column {x!r} given but no catalog table")
        return get_column(data, x)
    return clean_missing(np.asarray(x, dtype=float).reshape(-1))


def column_name(x: ArrayOrColumn | None, default: str) -> str:
    """``x`` when it is a column name, else ``default`` (for axis labels of arrays)."""
    return x if isinstance(x, str) else default


def color_label(name: str) -> str:
    """Colour-bar label for a column: ``FE_H`` → ``[Fe/H] (dex)``, ``LOGG_ERR`` → ``σ(log g) (dex)``."""
    upper = name.upper()
    if "_ERR" in upper:
        base = upper.split("_ERR")[0]
        unit = label_unit(base)
        text = rf"$\sigma$({label_display(base)})"
        return f"{text} ({unit})" if unit else text
    return axis_label(name)


def axis_limits(x: np.ndarray, pad: float = 0.05, q: float = 0.5) -> tuple[float, float]:
    """Axis range of the finite ``x``: its ``q``-th to (100 − ``q``)-th percentile widened by ``pad``
    of the span on both sides ((0, 1) when none is finite)."""
    ok = x[np.isfinite(x)]
    if ok.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(ok, [q, 100 - q])
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    span = hi - lo
    return float(lo - pad * span), float(hi + pad * span)


def get_cmap(name: str) -> mcolors.Colormap:
    """The registered matplotlib colour map ``name``."""
    from matplotlib import colormaps

    return colormaps[name]
