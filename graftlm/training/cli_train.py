"""``graftlm train RECIPE [--set key=value ...] [--smoke] [--resume]``."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from graftlm.training.pipeline import train
from graftlm.training.recipes import load_recipe, parse_overrides, smoke_config
from graftlm.training.trainer import TrainingDiverged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe name from graftlm/recipes/ (e.g. svae-768-h1) or a YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe key (repeatable), e.g. --set data_path=/data/wanjuan")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model, 3 steps, packaged text: checks that the recipe runs end to end "
                        "(--set values still apply on top)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last complete checkpoint")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_recipe(args.recipe, args.overrides)
        if args.smoke:  # tiny sizes first, then the user's --set values win again
            cfg = smoke_config(cfg)
            cfg.output_dir = "runs/smoke-{name}"
            cfg = cfg.replace(**parse_overrides(args.overrides))
        result = train(cfg, resume=args.resume)
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {"run_dir": str(result.run_dir), "step": result.step, "last_loss": result.last_loss,
               **{k: v for k, v in result.eval.items() if k != "examples"}}
    print(json.dumps(summary, indent=1))
    return 0
