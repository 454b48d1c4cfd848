"""bench/machine.py names the CPU on the results pages: model and the extensions kernels dispatch on."""

from __future__ import annotations

import os
from pathlib import Path

from script_module import load_script

machine = load_script(Path(__file__).resolve().parents[2] / "bench" / "machine.py", "bench_machine")


def test_the_first_processors_model_and_extensions(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu avx2 avx512f amx_bf16 sse\n\n"
        "processor\t: 1\nmodel name\t: Something Else\nflags\t\t: fpu\n"
    )
    expected = f"Intel(R) Xeon(R) Processor (avx2, avx512f, amx_bf16), {os.cpu_count()} CPUs"
    assert machine.describe(info) == expected


def test_without_avx2_or_without_the_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert machine.describe(info) == f"Old CPU (no AVX2), {os.cpu_count()} CPUs"
    assert machine.describe(tmp_path / "absent") == f"{os.cpu_count()} CPUs"
