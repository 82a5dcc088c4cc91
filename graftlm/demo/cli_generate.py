"""``graftlm generate RUN "prompt"``: continue a prompt, sentence by sentence, with a run's SentenceLLM."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder written by `graftlm demo`")
    parser.add_argument("prompt", help="text to continue (one or more sentences)")
    parser.add_argument("--sentences", type=int, default=4, help="new sentences at most (default 4)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed when sampling")
    parser.add_argument("--stop-head", action="store_true", help="let the termination head decide when to stop "
                        "(default: always generate --sentences sentences; a briefly trained head often stops at once)")


def run(args: argparse.Namespace) -> int:
    import torch

    import graftlm
    from graftlm.demo.run_folder import RunFolder

    try:
        if args.sentences < 1:
            raise ValueError(f"--sentences must be >= 1, got {args.sentences}")
        if args.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
        if not args.prompt.strip():
            raise ValueError("the prompt is empty: give at least one sentence")
        run = RunFolder.open(args.run_dir)
        run.require_trained("sllm")
        print(f"loading {run.path / 'sllm' / 'model'} (the backbone is re-loaded from its source) …", file=sys.stderr)
        sllm = graftlm.load(run.sllm_model_dir).eval()
        sampling = {"do_sample": True, "temperature": args.temperature,
                    "generator": torch.Generator().manual_seed(args.seed)} if args.temperature > 0 else {}
        print(args.prompt, end="", flush=True)
        with torch.inference_mode():
            for step in sllm.stream(args.prompt, max_new_sentences=args.sentences, ignore_stop=not args.stop_head,
                                    **sampling):
                if step[0] is not None:
                    print(step[0], end="", flush=True)
        print()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
