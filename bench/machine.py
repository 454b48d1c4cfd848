"""One line naming the CPU a benchmark ran on, for the results pages (figures differ by CPU: on a 2-core
AMD EPYC and a 2-core Xeon with AVX-512 the same code reached different fractions of the sgemm peak)."""

from __future__ import annotations

import os
from pathlib import Path

#: Instruction-set extensions worth naming beside a CPU's model (those oneDNN and MKL dispatch on).
EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``"<model name> (<extensions>), <n> CPUs"`` from ``/proc/cpuinfo``; the CPU count alone where
    that file is absent (not Linux)."""
    count = f"{os.cpu_count()} CPUs"
    try:
        text = cpuinfo.read_text()
    except OSError:
        return count
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    model = fields.get("model name", "unknown CPU")
    present = [e for e in EXTENSIONS if e in flags]
    return f"{model} ({', '.join(present) if present else 'no AVX2'}), {count}"


if __name__ == "__main__":
    print(describe())
