#!/usr/bin/env bash
# Issue 19 item 5: lr × batch
# for the levers' SentenceVAE at EQUAL WALL TIME (max_minutes each, default 10), held-out exact
# match every few steps (train_minutes is logged with every periodic eval), then one plot.
# Resumable: a finished cell (eval.json) is skipped, an interrupted one continues (--resume).
# EXTRA adds --set options to every cell and TAG a suffix to its folder, e.g. the sampled head:
#   TAG=-sampled EXTRA="--set train_head=sampled" LRS=3e-4 BATCHES=16 bash scripts/lr_batch_sweep.sh
#   bash scripts/lr_batch_sweep.sh            # LRS, BATCHES, MINUTES, THREADS from the environment
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
LRS="${LRS:-3e-4 1e-3 3e-3}"; BATCHES="${BATCHES:-16 32 64}"; MINUTES="${MINUTES:-10}"; THREADS="${THREADS:-2}"
for lr in $LRS; do
  for batch in $BATCHES; do
    dir="runs/lr-batch/lr$lr-b$batch${TAG:-}"
    if [ -f "$dir/eval.json" ]; then continue; fi
    resume=(); if [ -d "$dir/checkpoints" ]; then resume=(--resume); fi
    echo "== lr $lr batch $batch: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    graftlm train svae-smollm2-levers --threads "$THREADS" "${resume[@]}" --set name="lr$lr-b$batch${TAG:-}" \
      --set output_dir="$dir" --set lr="$lr" --set batch_size="$batch" --set max_minutes="$MINUTES" \
      --set eval_every="${EVAL_EVERY:-100}" --set eval_batches=4 --set save_every=100 --set eval_size=300 ${EXTRA:-}
  done
done
python scripts/plot_lr_batch.py runs/lr-batch
