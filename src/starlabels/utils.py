"""Small shared helpers: progress bars, device choice, seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def progress_enabled() -> bool:
    """Progress bars are on unless STARLABELS_NO_PROGRESS is set (tests and CI set it)."""
    return not os.environ.get("STARLABELS_NO_PROGRESS")


def progress(
    iterable: Iterable[T], *, desc: str = "", total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar (on stderr) unless disabled."""
    from tqdm.auto import tqdm

    return iter(
        tqdm(
            iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(),
            dynamic_ncols=True, leave=False,
        )
    )


def get_device(device: str | None = None):
    """A ``torch.device``: the one asked for, else ``cuda`` when available, else ``cpu``."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a fresh numpy Generator from ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _current_umask() -> int:
    """The process umask, read without changing it where /proc allows (else set and restore)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_permissions(path: os.PathLike | str, *, directory: bool = False) -> None:
    """chmod ``path`` to what a plain ``open``/``mkdir`` would give (0666/0777 minus the umask).

    ``tempfile.mkstemp``/``mkdtemp`` create owner-only files (0600/0700); atomic writers that
    rename such a temporary into place call this so the result can be shared like any file.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())
