"""Deterministic train/dev/test splits of a dataset's rows.

Both functions return one sorted ``int64`` index array per part (usually ``(train, dev, test)``);
the parts are disjoint and together cover every row exactly once. Part sizes are the fractions
times the number of rows, rounded by the largest-remainder rule so they always add up.

``group_split`` splits each group (e.g. ``"payne"``, ``"mdwarf"``, ``"yso"``: the ``meta/group``
column of a dataset) with its own fractions. Each group is shuffled with a generator seeded from
``(seed, crc32(group name))``, so a group's split does not change when other groups are added
or removed.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from starlabels.errors import InputDataError

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def _check_fractions(fractions: Sequence[float], what: str = "fractions") -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or f.size < 1:
        raise InputDataError(f"{what} must be a non-empty 1-D sequence, got {fractions!r}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise InputDataError(f"{what} must be finite and non-negative, got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise InputDataError(f"{what} must add up to 1, got {fractions!r} (sum {f.sum():g})")
    return f


def split_sizes(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Part sizes (int64, summing to ``n``): ``n · fractions`` rounded by largest remainder.

    Ties in the remainders go to the earlier part (train before dev before test).
    """
    f = _check_fractions(fractions)
    if n < 0:
        raise InputDataError(f"n must be non-negative, got {n}")
    exact = n * f
    sizes = np.floor(exact).astype(np.int64)
    short = int(n - sizes.sum())
    if short > 0:
        order = np.argsort(-(exact - sizes), kind="stable")
        sizes[order[:short]] += 1
    return sizes


def _split_permutation(perm: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.sort(perm[a:b]).astype(np.int64) for a, b in itertools.pairwise(bounds)]


def random_split(
    n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` at random into parts of the given fractions.

    Returns one sorted index array per fraction (``(train, dev, test)`` by default); the same
    ``(n, fractions, seed)`` always gives the same split.
    """
    sizes = split_sizes(int(n), fractions)
    perm = np.random.default_rng(seed).permutation(int(n))
    return tuple(_split_permutation(perm, sizes))


def _group_seed(seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def group_split(
    groups: Sequence[str] | np.ndarray,
    fractions_by_group: Mapping[str, Sequence[float]] | None = None,
    default: Sequence[float] | None = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Split rows group by group, each group with its own fractions.

    Parameters
    ----------
    groups
        (N,) group name of each row (strings; bytes are decoded as UTF-8).
    fractions_by_group
        ``{group: fractions}``, e.g. ``{"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2)}``.
        All entries must have the same number of parts.
    default
        Fractions for groups not in ``fractions_by_group``; ``None`` makes such a group an error.
    seed
        Base seed; each group is shuffled by a generator seeded from ``(seed, crc32(group))``.

    Returns
    -------
    One sorted int64 index array per part, over all groups.
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise InputDataError(f"groups must be 1-D, got shape {g.shape}")
    if g.dtype.kind == "S":
        g = np.char.decode(g, "utf-8")
    g = g.astype(str)
    table = {str(k): _check_fractions(v, f"fractions for group {k!r}")
             for k, v in (fractions_by_group or {}).items()}
    default_f = None if default is None else _check_fractions(default, "default fractions")
    n_parts = {len(v) for v in table.values()} | ({len(default_f)} if default_f is not None else set())
    if len(n_parts) > 1:
        raise InputDataError(f"all fractions must have the same number of parts, got {sorted(n_parts)}")
    if not n_parts:
        raise InputDataError("group_split needs fractions_by_group or default")
    k = n_parts.pop()

    names, inverse = np.unique(g, return_inverse=True)
    # rows of each group, in row order: sort by group index (stable)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(names)))])
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for gi, name in enumerate(names):  # one iteration per group, not per row
        f = table.get(str(name), default_f)
        if f is None:
            raise InputDataError(
                f"group {name!r} has no fractions and default=None; known groups: {sorted(table)}"
            )
        rows = order[bounds[gi]:bounds[gi + 1]]
        sizes = split_sizes(len(rows), f)
        perm = rows[np.random.default_rng(_group_seed(seed, str(name))).permutation(len(rows))]
        for j, part in enumerate(_split_permutation(perm, sizes)):
            parts[j].append(part)
    return tuple(
        np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts
    )
