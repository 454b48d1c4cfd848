"""Reading configuration files: the TOML file itself and the one rule for the files it names.

:func:`read_toml` reads a TOML file and hands the parsed tables to a config builder (the training
config of :mod:`starlabels.training.config`, the recipe of :mod:`starlabels.training.recipe`),
prefixing its errors with the file name. :func:`resolve_config_file` turns a file value of a config
into a path: relative to the config file's folder, else a reference file by bare name, else a
known name (:func:`element_window_names`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from starlabels.errors import InputFileError
from starlabels.training.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

__all__ = ["element_window_names", "read_toml", "resolve_config_file"]

T = TypeVar("T")


def resolve_config_file(value: str, base: Path, where: str, *, reference: bool = True,
                        names: Sequence[str] = ()) -> str:
    """The path a config's file value stands for (the one rule for every file key but
    ``[data] files`` and ``[output] folder``, which are always ``base / value``).

    An absolute path is used as it is; a relative one is relative to ``base`` (the config file's
    folder). When no file is there and ``reference`` is true, a bare file name is looked up as a
    reference file (``$STARLABELS_REFERENCE_DIR``, the download cache), and a value in ``names``
    (e.g. an instrument's element-window names) is kept as a name. Otherwise raises
    :class:`ConfigError` naming ``where`` and every place it looked.
    """
    p = Path(value).expanduser()
    cand = p if p.is_absolute() else base / p
    if cand.is_file():
        return str(cand)
    if not p.is_absolute() and value in names:
        return value
    looked = [str(cand)]
    if reference and not p.is_absolute() and len(p.parts) == 1:
        from starlabels.core.reference import reference_folders

        for folder in reference_folders():
            hit = folder / p.name
            looked.append(str(hit))
            if hit.is_file():
                return str(hit)
    extra = f" or one of the names {sorted(names)}" if names else ""
    raise ConfigError(f"{where} {value!r}: no such file{extra} (relative paths are relative to the config "
                      f"file's folder {base}; looked in: {', '.join(looked)})")


def element_window_names() -> list[str]:
    """Names of the element windows of every registered instrument (e.g. ``"dr14"``), which a
    windows key may give instead of a file."""
    from starlabels.core import available, get

    return sorted({n for inst in available() for n in get(inst).element_windows})


def read_toml(path: str | Path, parse: Callable[..., T], what: str = "training config") -> T:
    """Read the TOML file ``path`` and build a config with ``parse(raw, base_dir=folder)``.

    Raises :class:`~starlabels.errors.InputFileError` when the file is missing or not TOML, and
    :class:`ConfigError` (prefixed with the file name) for bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"{what} file does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a valid TOML file: {exc}") from None
    try:
        return parse(raw, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
