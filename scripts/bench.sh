#!/usr/bin/env bash
# Sets up the environment and regenerates the CPU benchmark tables of docs/benchmarks.md
# (docs/bench/cpu/results.{md,json} + PNG charts). Takes about 45 minutes on 2 cores; run it on an
# otherwise idle machine. Extra arguments go to `graftlm bench` (e.g. --backbones opt-125m).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=2
exec graftlm bench --out docs/bench/cpu --threads 2 \
    --backbones opt-125m opt-350m opt-1.3b smollm2-135m \
    --parts segments throughput breakdown kv long --batches 1 8 --batch32 --repeats 3 "$@"
