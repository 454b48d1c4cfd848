#!/usr/bin/env bash
# Run the whole test suite (sets up .venv first). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MPLBACKEND=Agg
.venv/bin/python -m ruff check src tests bench
# one-way layers and no import cycles ([tool.importlinter] in pyproject.toml); a violation fails the run
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
