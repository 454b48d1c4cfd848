"""Lazy re-exports for packages: names are imported from their modules on first use.

Keeps ``import starlabels.<package>`` cheap (no torch, astropy or h5py until a name needs them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``names`` (name → module)."""

    def getattr_(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(names) | set(vars(importlib.import_module(package))))

    return getattr_, dir_, sorted(names)
