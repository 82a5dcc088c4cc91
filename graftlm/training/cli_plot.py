"""``graftlm plot RUN_DIR`` → ``RUN_DIR/loss.png`` (train loss and held-out loss/PPL by step).

A `graftlm demo` run folder holds two training runs: both are plotted, to ``RUN/svae-loss.png``
and ``RUN/sllm-loss.png`` (or into the folder ``--out``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (holds metrics.jsonl) or a `graftlm demo` run folder")
    parser.add_argument("--out", default=None, help="PNG path (default RUN_DIR/loss.png); for a demo run folder, "
                        "the folder for svae-loss.png and sllm-loss.png (default the run folder)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")


def plot_run(run_dir: str | Path, out: str | Path | None = None, *, log_y: bool = False) -> Path:
    """Write the loss-curve PNG of a run and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from graftlm.training.metrics import read_metrics

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


def plot_demo_run(run_dir: str | Path, out_dir: str | Path | None = None, *, log_y: bool = False) -> list[Path]:
    """Plot the SentenceVAE and SentenceLLM parts of a demo run folder; their PNG paths."""
    from graftlm.demo.run_folder import demo_sub_runs

    parts = demo_sub_runs(run_dir, finished_only=False)
    if not parts:
        raise ValueError(f"the demo run {str(run_dir)!r} has no training phase with records yet; "
                         f"continue it with `graftlm demo --resume {run_dir}`")
    folder = Path(out_dir) if out_dir else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return [plot_run(sub, folder / f"{name}-loss.png", log_y=log_y) for name, sub in parts.items()]


def run(args: argparse.Namespace) -> int:
    import sys

    from graftlm.demo.run_folder import is_demo_run

    try:
        if not Path(args.run_dir).exists():
            raise ValueError(f"the run folder {args.run_dir!r} does not exist")
        if is_demo_run(args.run_dir):
            paths = plot_demo_run(args.run_dir, args.out, log_y=args.log_y)
        else:
            paths = [plot_run(args.run_dir, args.out, log_y=args.log_y)]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(map(str, paths)))
    return 0
