#!/usr/bin/env bash
# Create .venv (once) and install starlabels with its dev extra into it.
# torch is pinned to 2.13.0 first: an unpinned torch would pull the multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.starlabels-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "starlabels is installed in $root/.venv. Run its CLI as:"
echo "  source .venv/bin/activate     # then: starlabels --help"
echo "or without activating:  .venv/bin/starlabels --help"
