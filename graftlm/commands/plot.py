"""``graftlm plot RUN_DIR`` → ``RUN_DIR/loss.png`` (train loss and held-out loss/PPL by step).

A `graftlm demo` run folder holds two training runs: both are plotted, to ``RUN/svae-loss.png``
and ``RUN/sllm-loss.png`` (or into the folder ``--out``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graftlm.demo.run_folder import demo_sub_runs, is_demo_run
from graftlm.training.plots import plot_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (holds metrics.jsonl) or a `graftlm demo` run folder")
    parser.add_argument("--out", default=None, help="PNG path (default RUN_DIR/loss.png); for a demo run folder, "
                        "the folder for svae-loss.png and sllm-loss.png (default the run folder)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")


def plot_demo_run(run_dir: str | Path, out_dir: str | Path | None = None, *, log_y: bool = False) -> list[Path]:
    """Plot the SentenceVAE and SentenceLLM parts of a demo run folder; their PNG paths."""
    parts = demo_sub_runs(run_dir, finished_only=False)
    if not parts:
        raise ValueError(f"the demo run {str(run_dir)!r} has no training phase with records yet; "
                         f"continue it with `graftlm demo --resume {run_dir}`")
    folder = Path(out_dir) if out_dir else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return [plot_run(sub, folder / f"{name}-loss.png", log_y=log_y) for name, sub in parts.items()]


def run(args: argparse.Namespace) -> int:
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
