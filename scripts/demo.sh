#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the offline demo on SmolLM2-135M.
# Extra arguments go to `graftlm demo`, e.g. `bash scripts/demo.sh --minutes 5`.
set -euo pipefail
# The budget (--minutes) covers the whole command, environment setup included.
export GRAFTLM_DEMO_STARTED="$(date +%s.%N)"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec graftlm demo "$@"
