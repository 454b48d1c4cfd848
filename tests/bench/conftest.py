"""The bench scripts this folder's tests run end to end (``bench/accuracy.py --quick``, about 75 s, and
``bench/astronn_agreement.py --quick``, about 60 s, each on one thread in a subprocess) start in the
background as soon as collection ends, one after the other, and their test modules are moved to the
end of the run: the suite's other tests run meanwhile on the second core instead of waiting. Each
module's fixture then waits for its own run (:func:`bench_run`). A run is started only when some of
its module's tests were selected; its work folder is removed when the session ends."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from script_module import ROOT, load_script

HERE = Path(__file__).resolve().parent
#: bench/accuracy.py as a module: its config file and its rule for finding ../shared/data
ACCURACY = load_script(ROOT / "bench" / "accuracy.py", "bench_accuracy_for_conftest")


def accuracy_config(work: Path) -> Path:
    """The committed ``bench/accuracy_config.toml`` with the [quick] run's work folder and report moved
    to ``work/work``; written to ``work/accuracy_config.toml``."""
    text = ACCURACY.DEFAULT_CONFIG.read_text()
    old = 'data = { work = "bench/.work/accuracy-quick", output = "bench/.work/accuracy-quick/accuracy.md" }'
    if old not in text:
        raise AssertionError("bench/accuracy_config.toml: its [quick] data line changed; update conftest")
    out = work / "work"
    path = work / "accuracy_config.toml"
    path.write_text(text.replace(old, f'data = {{ work = "{out}", output = "{out / "report.md"}" }}'))
    return path


def _accuracy_argv(work: Path) -> list[str]:
    return [sys.executable, ACCURACY.__file__, "--quick", "--config", str(accuracy_config(work))]


def _astronn_argv(work: Path) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "astronn_agreement.py"), "--quick", "--workdir", str(work),
            "--out", str(work / "report.md"), "--json", str(work / "summary.json")]


@dataclass
class BenchRun:
    """One bench script run in its own work folder, its output in ``stdout.txt``/``stderr.txt`` there
    and its exit status in ``status.txt`` once it ends."""

    name: str
    module: str  # the test module that uses it
    argv_of: Callable[[Path], list[str]]
    timeout_s: float
    needs_shared_data: bool = False
    work: Path | None = None

    def prepare(self) -> list[str]:
        self.work = Path(tempfile.mkdtemp(prefix=f"starlabels-{self.name}-"))
        argv = self.argv_of(self.work)
        out, err, status = (self.work / f for f in ("stdout.txt", "stderr.txt", "status.txt"))
        return [f"{shlex.join(argv)} >{shlex.quote(str(out))} 2>{shlex.quote(str(err))}",
                f"echo $? >{shlex.quote(str(status))}"]

    def wait(self) -> tuple[int, str, Path]:
        """Block until the run has ended (started now if collection did not start it): exit status,
        the last 8000 characters of its stdout and stderr, its work folder."""
        if self.work is None:
            _start([self])
        assert self.work is not None
        status = self.work / "status.txt"
        deadline = time.monotonic() + self.timeout_s
        while not status.exists() or not status.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no result after {self.timeout_s:.0f} s ({self.work})")
            time.sleep(0.5)
        output = "".join((self.work / f).read_text()[-4000:] for f in ("stdout.txt", "stderr.txt"))
        return int(status.read_text()), output, self.work


RUNS = {
    "accuracy": BenchRun("accuracy", "test_accuracy_end_to_end.py", _accuracy_argv, timeout_s=900,
                         needs_shared_data=True),
    "astronn": BenchRun("astronn", "test_astronn_agreement.py", _astronn_argv, timeout_s=1200),
}
_STARTED: list[subprocess.Popen] = []


def _start(runs: list[BenchRun]) -> None:
    """Run ``runs`` one after the other in one background shell, one BLAS/OpenMP thread each."""
    lines = [line for run in runs for line in run.prepare()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STARLABELS_NO_PROGRESS": "1"}
    quiet = subprocess.DEVNULL
    _STARTED.append(subprocess.Popen(["sh", "-c", "\n".join(lines)], cwd=ROOT, env=env,
                                     start_new_session=True, stdin=quiet, stdout=quiet, stderr=quiet))


def _selected(items: list[pytest.Item]) -> list[BenchRun]:
    modules = {item.path.name for item in items if item.path.parent == HERE}
    return [run for run in RUNS.values() if run.module in modules
            and (ACCURACY.shared_data_dir().is_dir() or not run.needs_shared_data)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of the modules waiting for a background run go last (stable order otherwise)."""
    waiting = {run.module for run in RUNS.values()}
    items.sort(key=lambda item: item.path.parent == HERE and item.path.name in waiting)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    runs = _selected(session.items)
    if runs:
        _start(runs)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for proc in _STARTED:  # an interrupted session leaves no bench running
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    for run in RUNS.values():
        if run.work is not None:
            shutil.rmtree(run.work, ignore_errors=True)


@pytest.fixture(scope="session")
def bench_run():
    """``bench_run(name)`` → (exit status, output tail, work folder) of the background run ``name``."""
    return lambda name: RUNS[name].wait()
