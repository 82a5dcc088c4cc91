"""Print the markdown table of a `scripts/svae_levers.sh` folder: steps, training minutes (from the
last checkpoint's trainer state), held-out exact match / token accuracy / PPL (full softmax)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    ev = json.loads((run / "eval.json").read_text())
    states = sorted((run / "checkpoints").glob("step-*/trainer_state.json"))
    state = json.loads(states[-1].read_text()) if states else {}
    minutes = state.get("train_seconds", float("nan")) / 60
    return (f"| {run.name} | {state.get('step', '?')} | {minutes:.1f} | {ev['exact_match']:.1%} | "
            f"{ev['token_accuracy']:.1%} | {ev['ppl']:.2f} |")


def main(folder: str) -> None:
    print("| variant | steps | training min | exact | token acc | PPL |\n|---|---:|---:|---:|---:|---:|")
    for run in sorted(Path(folder).iterdir()):
        if (run / "eval.json").is_file():
            print(row(run))


if __name__ == "__main__":
    main(sys.argv[1])
