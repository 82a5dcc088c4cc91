"""Held-out exact match against training minutes, one line per (lr, batch) run of
scripts/lr_batch_sweep.sh (the periodic evals in each run's metrics.jsonl); writes
FOLDER/lr_batch.png and prints each run's final exact match."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(run: Path) -> tuple[list[float], list[float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in records if r.get("kind") == "eval" and "train_minutes" in r and "exact_match" in r]
    return [r["train_minutes"] for r in evals], [r["exact_match"] for r in evals]


def main(folder: str) -> None:
    runs = sorted(p for p in Path(folder).iterdir() if (p / "metrics.jsonl").is_file())
    if not runs:
        raise SystemExit(f"no runs with metrics.jsonl under {folder}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        minutes, exact = curve(run)
        ax.plot(minutes, exact, marker="o", label=run.name)
        final = json.loads((run / "eval.json").read_text())["exact_match"] if (run / "eval.json").is_file() else None
        print(f"{run.name}: {len(minutes)} evals, final exact match {final if final is None else f'{final:.1%}'}")
    ax.set_xlabel("training minutes (2-core CPU)")
    ax.set_ylabel("held-out exact match")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(folder) / "lr_batch.png", dpi=120)
    print(f"wrote {Path(folder) / 'lr_batch.png'}")


if __name__ == "__main__":
    main(sys.argv[1])
