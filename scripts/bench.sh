#!/usr/bin/env bash
# Sets up the environment and regenerates every CPU figure of docs/benchmarks.md and the README's
# speed headline, into docs/bench/cpu/: results.{md,json} + PNG charts (`graftlm bench`: throughput
# at batch 1/8/32, the peers table at batch 1 with the trained model's row, breakdown, KV, long
# context), compile.txt (torch.compile probe), batch8_lean.txt (prefill share of the batch-8 lean
# loop) and, with AUTHORS set, authors.txt (training throughput vs the authors' code).
# About 85 minutes on an otherwise idle 2-core machine (plus 8 for the demo if TRAINED is unset).
#
#   TRAINED=RUN        a finished `graftlm demo` run (default: runs/bench-demo, made by `graftlm demo` if absent)
#   AUTHORS=PATH       a checkout of github.com/BestAnHongjun/SentenceVAE (optional)
#   AUTHORS_PYTHON=PY  a Python that imports it (mmengine, transformers < 4.45)
# Extra arguments go to `graftlm bench` (e.g. --backbones smollm2-135m --parts peers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=2
OUT=docs/bench/cpu
TRAINED="${TRAINED:-runs/bench-demo}"
if [ ! -f "$TRAINED/state.json" ]; then
    graftlm demo --out "$TRAINED"
fi
graftlm bench --out "$OUT" --threads 2 \
    --backbones opt-125m opt-350m opt-1.3b smollm2-135m \
    --parts segments throughput peers breakdown kv long --batches 1 8 --batch32 --repeats 3 \
    --peer-tokens 128 --trained "$TRAINED" "$@"
python scripts/batch8_lean_probe.py --threads 2 | tee "$OUT/batch8_lean.txt"
python scripts/compile_probe.py --threads 2 | tee "$OUT/compile.txt"
if [ -n "${AUTHORS:-}" ]; then
    python scripts/authors_throughput.py --authors "$AUTHORS" --authors-python "${AUTHORS_PYTHON:-python}" \
        --threads 2 | tee "$OUT/authors.txt"
fi
