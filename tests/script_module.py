"""A script or another test's file that is not an importable module (``bench/*.py``, ``scripts/*.py``,
the Appendix-B reference, shared test data) loaded as a module: importlib's three steps spelled once
for every test (``pythonpath = ["tests"]`` in pyproject.toml makes this importable)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str | Path, name: str, *, register: bool = False) -> ModuleType:
    """The module made by executing ``path`` under the name ``name``. ``register``: put it in
    ``sys.modules`` before executing it (dataclasses and pickling look their module up there); the
    caller removes it when done."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
