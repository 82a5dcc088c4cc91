"""Fit and plot the compute-to-parity curve of scripts/quality_budgets.sh: for each budget folder,
the SLLM ÷ backbone bits-per-byte ratio (sllm/eval.json, from graftlm.evaluate), the training
minutes of both phases (their last checkpoint's train_seconds) and training FLOPs ≈ 6 × parameters
× tokens seen per phase (Kaplan's estimate, an upper bound here: the SLLM's backbone runs once per
sentence, not per token; parameters counted from the saved safetensors, plus SmolLM2-135M's for
the SLLM, whose folder refers to the backbone instead of storing it). Prints the fit of (ratio − 1) = a·FLOPs^(−b), the FLOPs it predicts
for ×1.05 with a 16–84 % interval, and writes FOLDER/scaling.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from safetensors import safe_open  # noqa: E402

from graftlm.evaluation.scaling import fit_power_law  # noqa: E402

SMOLLM2_PARAMS = 134_515_008  # the backbone a "reference" save does not store


def parameters(folder: Path) -> int:
    total = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                total += _numel(st.get_slice(key).get_shape())
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def phase(run: Path) -> tuple[float, float]:
    """(FLOPs, minutes) of one training phase."""
    state = json.loads(sorted((run / "checkpoints").glob("step-*/trainer_state.json"))[-1].read_text())
    params = parameters(run / "final")
    if run.name == "sllm":  # saved by reference: the backbone's weights are not in the folder
        params += SMOLLM2_PARAMS
    return 6.0 * params * state["tokens_seen"], state.get("train_seconds", 0.0) / 60


def main(folder: str) -> None:
    rows = []
    budgets = [p for p in Path(folder).iterdir() if p.is_dir() and p.name.replace('.', '', 1).isdigit()]
    for budget in sorted(budgets, key=lambda p: float(p.name)):
        ev = budget / "sllm" / "eval.json"
        if not ev.is_file():
            continue
        ratio = json.loads(ev.read_text())["bits_per_byte_ratio"]
        (f1, m1), (f2, m2) = phase(budget / "svae"), phase(budget / "sllm")
        rows.append((float(budget.name), f1 + f2, m1 + m2, ratio))
    print("| budget min | training min | training FLOPs | bits/byte ratio |\n|---:|---:|---:|---:|")
    for b, flops, minutes, ratio in rows:
        print(f"| {b:g} | {minutes:.1f} | {flops:.3g} | ×{ratio:.3f} |")
    fit = fit_power_law([r[1] for r in rows], [r[3] for r in rows])
    point, low, high = fit.flops_for(1.05)
    print(f"fit: ratio − 1 = {fit.excess(1.0):.3g} · FLOPs^(−{fit.b:.3f}) ({fit.points} budgets); "
          f"×1.05 predicted at {point:.3g} FLOPs (16–84 %: {low:.3g} – {high:.3g})")
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r[1] for r in rows]
    ax[0].loglog(xs, [r[3] - 1 for r in rows], "o", label="measured")
    ax[0].loglog(xs, fit.excess(xs), "-", label=f"fit: b = {fit.b:.3f}")
    ax[0].set_xlabel("training FLOPs (6·N·tokens)")
    ax[0].set_ylabel("bits/byte ratio − 1")
    ax[0].legend()
    ax[1].semilogx([r[2] for r in rows], [r[3] for r in rows], "o-")
    ax[1].set_xlabel("training minutes (SVAE + SLLM, wall clock as run)")
    ax[1].set_ylabel("SLLM ÷ backbone bits per byte")
    fig.tight_layout()
    fig.savefig(Path(folder) / "scaling.png", dpi=120)
    print(f"wrote {Path(folder) / 'scaling.png'}")


if __name__ == "__main__":
    main(sys.argv[1])
