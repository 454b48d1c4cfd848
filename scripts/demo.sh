#!/usr/bin/env bash
# Run the main job, `starlabels demo`, on the embedded default (sets up .venv first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export MPLBACKEND=Agg
exec .venv/bin/starlabels demo "$@"
