"""Print the markdown table of a `scripts/svae_levers.sh` folder (steps, training minutes from the
last checkpoint's trainer state, held-out exact match / token accuracy / PPL, full softmax) or of a
`scripts/sllm_levers.sh` folder (SLLM and SmolLM2 bits per byte on the same bytes, their ratio, and
the VAE's reconstruction after the SLLM phase)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def trained(run: Path) -> tuple[str, float]:
    states = sorted((run / "checkpoints").glob("step-*/trainer_state.json"))
    state = json.loads(states[-1].read_text()) if states else {}
    return str(state.get("step", "?")), state.get("train_seconds", float("nan")) / 60


def svae_row(run: Path, ev: dict) -> str:
    steps, minutes = trained(run)
    return (f"| {run.name} | {steps} | {minutes:.1f} | {ev['exact_match']:.1%} | "
            f"{ev['token_accuracy']:.1%} | {ev['ppl']:.2f} |")


def sllm_row(run: Path, ev: dict) -> str:
    steps, minutes = trained(run)
    vae = ev.get("svae", {})
    after = f"{vae['exact_match']:.1%} / {vae['token_accuracy']:.1%}" if vae else "–"
    return (f"| {run.name} | {steps} | {minutes:.1f} | {ev['sllm_bits_per_byte']:.3f} | {ev['backbone_bits_per_byte']:.3f} | "
            f"×{ev['bits_per_byte_ratio']:.2f} | {ev['termination_accuracy']:.1%} | {after} |")


def main(folder: str) -> None:
    runs = [(run, json.loads((run / "eval.json").read_text())) for run in sorted(Path(folder).iterdir())
            if (run / "eval.json").is_file()]
    if any("sllm_bits_per_byte" in ev for _, ev in runs):
        print("| SentenceVAE | steps | training min | SLLM bits/byte | SmolLM2 bits/byte | ratio | stop acc | "
              "VAE exact / token acc after |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(sllm_row(run, ev) for run, ev in runs))
    else:
        print("| variant | steps | training min | exact | token acc | PPL |\n|---|---:|---:|---:|---:|---:|")
        print("\n".join(svae_row(run, ev) for run, ev in runs))


if __name__ == "__main__":
    main(sys.argv[1])
