"""Small shared helpers: progress bars, device choice, seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

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


def on_device(module: Any, device: Any) -> Any:
    """``module.to(device)`` (a ``torch.nn.Module``, moved in place and returned), without the walk
    over its submodules when every parameter and buffer is on ``device`` already — as on every
    ``predict`` call after the first (a catalog makes one per unit; APOGEE Net's walk: ~0.14 ms)."""
    import itertools

    import torch

    device = torch.device(device)
    if all(t.device == device for t in itertools.chain(module.parameters(), module.buffers())):
        return module
    return module.to(device)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python's, numpy's (legacy) and torch's *global* generators; return a fresh numpy
    Generator from ``seed``.

    Process-wide: for scripts and the CLI, which own their process. The library's own seeded
    regions use :func:`seeded` or a :class:`RandomStream` and leave the caller's states alone.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def global_random_state() -> dict[str, Any]:
    """Copies of the process's global random states: torch's CPU generator (``"torch"``, uint8
    tensor), numpy's legacy generator (``"numpy"``, the tuple of ``np.random.get_state``),
    python's ``random`` (``"python"``) and, when CUDA is available, every CUDA device's
    (``"cuda"``, list of uint8 tensors)."""
    import torch

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_random_state(state: Mapping[str, Any]) -> None:
    """Set the process's global random states to ``state`` (from :func:`global_random_state`)."""
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seeded_random_state(seed: int) -> dict[str, Any]:
    """The global random states :func:`seed_everything` (``seed``) would leave, built from
    private generators: the process's own states are not touched."""
    import torch

    state: dict[str, Any] = {
        "torch": torch.Generator().manual_seed(seed).get_state(),
        "numpy": np.random.RandomState(seed % 2**32).get_state(),
        "python": random.Random(seed).getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [torch.Generator(device=f"cuda:{i}").manual_seed(seed).get_state()
                         for i in range(torch.cuda.device_count())]
    return state


class RandomStream:
    """Global random states of one's own, for code that can only draw from the process's global
    generators (``nn.Dropout`` in training, the default weight initialisation).

    ``with stream.active():`` swaps the stream's states in, and on leaving keeps where the stream
    got to and gives the caller its own states back, so a seeded computation is reproducible and
    the caller's random streams continue as if it had never run. Consecutive active blocks
    continue one stream (as if nothing had run in between). Nested ``active()`` blocks of one
    stream are no-ops. Like :func:`torch.random.fork_rng` it swaps process-wide state: another
    thread drawing from the global generators meanwhile would draw from (and advance) the stream.

    ``seed``: start as :func:`seed_everything` (``seed``) would; or ``state``: start from states
    of :func:`global_random_state` (e.g. a checkpoint's).
    """

    def __init__(self, seed: int | None = None, *, state: Mapping[str, Any] | None = None) -> None:
        if (seed is None) == (state is None):
            raise ValueError("RandomStream needs exactly one of seed and state")
        self.state: dict[str, Any] = dict(state) if state is not None else seeded_random_state(int(seed))
        self._active = False

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run the block on the stream's states; the caller's states are restored afterwards."""
        if self._active:
            yield
            return
        caller = global_random_state()
        set_global_random_state(self.state)
        self._active = True
        try:
            yield
        finally:
            self._active = False
            self.state = global_random_state()
            set_global_random_state(caller)

    def snapshot(self) -> dict[str, Any]:
        """The stream's current states (live ones while active), as :func:`global_random_state`."""
        return global_random_state() if self._active else dict(self.state)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global generators seeded as by :func:`seed_everything` (``seed``),
    then give the caller's states back (a one-off :class:`RandomStream`)."""
    with RandomStream(seed).active():
        yield


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
