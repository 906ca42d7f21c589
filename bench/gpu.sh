#!/usr/bin/env bash
# One prepared GPU check (issue 30): fine-tuning InternVL3-2B (random weights), the Judge's frames/s at
# batch 1, 8 and 32, ingest with 1-16 workers; one table. See bench/gpu.py's docstring.
#
#   bench/gpu.sh              # on one GPU machine; stopped after 9 minutes
#   bench/gpu.sh --dry-run    # anywhere: arguments, configs, the model on the meta device
#
# PYTHON picks the interpreter (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ " $* " == *" --dry-run "* ]]; then
    exec "$PYTHON" bench/gpu.py "$@"
fi
exec timeout --signal=TERM --kill-after=20 540 "$PYTHON" bench/gpu.py "$@"
