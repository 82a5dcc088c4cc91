"""Loss curves of a training run folder (its ``metrics.jsonl``) as a PNG."""

from __future__ import annotations

from pathlib import Path

from graftlm.training.metrics import read_metrics


def plot_run(run_dir: str | Path, out: str | Path | None = None, *, log_y: bool = False) -> Path:
    """Write the loss-curve PNG of a run and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train" and isinstance(r.get("loss"), (int, float))]
    evals = [r for r in records if r.get("kind") == "eval" and isinstance(r.get("loss"), (int, float))]
    if not train:
        raise ValueError(f"{run_dir} has no training records in metrics.jsonl yet")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="held-out loss (EMA)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1]
    for key, label in (("ppl", "held-out PPL"), ("sllm_ppl", "sentence-decoder PPL"),
                       ("exact_match", "exact match"), ("token_accuracy", "token accuracy")):
        pts = [(r["step"], r[key]) for r in evals if isinstance(r.get(key), (int, float))]
        if pts:
            (ax.semilogy if key.endswith("ppl") else ax.plot)(*zip(*pts), "o-", label=label)
    if not evals:
        lr = [(r["step"], r["lr"]) for r in train if isinstance(r.get("lr"), (int, float))]
        if lr:
            ax.plot(*zip(*lr), label="lr")
    ax.set_xlabel("optimizer step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    path = Path(out) if out else Path(run_dir) / "loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
