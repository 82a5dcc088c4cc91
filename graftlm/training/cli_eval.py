"""``graftlm eval RUN_DIR`` — held-out metrics of a run's latest checkpoint (EMA weights).

Rebuilds the model from ``RUN_DIR/recipe.yaml``, loads the checkpoint, evaluates ``eval_size``
held-out examples (see `graftlm.training.evaluate`), writes ``eval.json`` / ``eval.md`` into the
run folder and prints the metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by graftlm train")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: the latest complete one)")
    parser.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set eval_size=200 or --set data_path=...")
    parser.add_argument("--examples", type=int, default=12, help="reconstructions shown (SVAE)")
    parser.add_argument("--threads", type=int, default=None)


def evaluate_run(run_dir: str | Path, *, checkpoint: str | Path | None = None, raw: bool = False,
                 overrides: list[str] | None = None, examples: int = 12) -> dict:
    import dataclasses

    import torch
    import yaml
    from safetensors.torch import load_file

    from graftlm.training import checkpointing as ckpt
    from graftlm.training.models import build
    from graftlm.training.pipeline import evaluate, heldout, write_eval
    from graftlm.training.recipes import TrainConfig, check_keys, parse_overrides

    run_dir = Path(run_dir)
    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        raise ValueError(f"{recipe} does not exist: is {run_dir} a graftlm run folder?")
    data = yaml.safe_load(recipe.read_text())
    check_keys(data, str(recipe))
    cfg = dataclasses.replace(TrainConfig(**data), **parse_overrides(overrides)).validate()
    path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir)
    if path is None:
        raise ValueError(f"{run_dir} has no complete checkpoint yet")
    torch.manual_seed(cfg.seed)
    built = build(cfg)
    weights = path / ("model.safetensors" if raw or not (path / "ema.safetensors").is_file() else "ema.safetensors")
    state = load_file(str(weights))
    missing, unexpected = built.model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k not in _tied(built.model)]:
        raise ValueError(f"{weights} does not fit the recipe's model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        result = evaluate(cfg, built, built.model, heldout(cfg, built), full=True, baseline=True, num_examples=examples)
    result = {"checkpoint": str(path), "weights": weights.stem, **result}
    write_eval(run_dir, result)
    return result


def _tied(model) -> set[str]:
    """Keys that share storage with another key (saved once by safetensors' save_model)."""
    seen: dict[int, str] = {}
    tied = set()
    for k, v in model.state_dict().items():
        ptr = v.data_ptr()
        if ptr in seen:
            tied.update({k, seen[ptr]})
        seen[ptr] = k
    return tied


def run(args: argparse.Namespace) -> int:
    import torch

    from graftlm.training.evaluate import reconstruction_table

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate_run(args.run_dir, checkpoint=args.checkpoint, raw=args.raw, overrides=args.overrides,
                              examples=args.examples)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    if result.get("examples"):
        print(reconstruction_table(result["examples"]))
    return 0
