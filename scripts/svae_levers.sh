#!/usr/bin/env bash
# Issue 19's SentenceVAE levers at EQUAL STEPS (a shared CPU makes equal wall time unfair):
# the quality recipe (SmolLM2 tokenizer, frozen SmolLM2 embeddings + tied head, pydoc, batch 32)
# with each lever, evaluated by `graftlm train`'s final held-out evaluation (full softmax, greedy
# exact match over eval_size segments). Resumable: a finished variant (eval.json present) is skipped.
# STEPS (default 400), THREADS (default 1), VARIANTS (default: all below) from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STEPS="${STEPS:-400}"; THREADS="${THREADS:-1}"
declare -A LEVERS=(
  [pooled-cross]=""
  [positional-cross]="--set vae_encoder=positional"
  [positional-cross-warm]="--set vae_encoder=positional --set warm_start=true"
  [positional-cross-sampled]="--set vae_encoder=positional --set train_head=sampled --set head_negatives=4096"
  [positional-prefix4]="--set vae_encoder=positional --set vae_conditioning=prefix --set memory_slots=4"
  [positional-prefix4-sampled]="--set vae_encoder=positional --set vae_conditioning=prefix --set memory_slots=4 --set train_head=sampled --set head_negatives=4096"
  [positional-prefix4-warm]="--set vae_encoder=positional --set vae_conditioning=prefix --set memory_slots=4 --set warm_start=true"
  [positional-prefix4-llama1]="--set vae_encoder=positional --set vae_conditioning=prefix --set memory_slots=4 --set warm_start=true --set decoder_from_backbone=1"
)
VARIANTS="${VARIANTS:-pooled-cross positional-cross positional-prefix4 positional-prefix4-sampled positional-prefix4-warm positional-prefix4-llama1}"
for v in $VARIANTS; do
  dir="runs/levers-$STEPS/$v"
  if [ -f "$dir/eval.json" ]; then continue; fi
  rm -rf "$dir"
  echo "== $v: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  graftlm train svae-smollm2-quality --threads "$THREADS" ${LEVERS[$v]} --set name="$v" --set output_dir="$dir" \
    --set max_steps="$STEPS" --set cosine_steps="$STEPS" --set warmup_steps=50 --set mixed_precision='"no"' \
    --set eval_every=100000 --set save_every="$STEPS" --set eval_size=300 2>&1 | grep -v "it/s\]" | tail -3
  echo "   done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
done
python scripts/levers_table.py "runs/levers-$STEPS"
