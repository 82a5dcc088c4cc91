"""``graftlm demo``: graft, train and run SmolLM2-135M offline, end to end, within a time budget.

``graftlm demo [--minutes 8] [--model smollm2|HF-id|folder] [--data FILE ...] [--out RUN]``
``graftlm demo --resume RUN`` continues an interrupted run, reusing every finished phase.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from graftlm.demo.inputs import (
    CORPORA,
    PRECISIONS,
    DemoSettings,
    check_model_argument,
    load_documents,
)
from graftlm.demo.report import busy_summary, closing_table
from graftlm.demo.run_folder import RunFolder
from graftlm.demo.steps import DemoSession, run_phases

# options that define a run; with --resume they come from RUN/state.json instead
RUN_OPTIONS = ("model", "data", "corpus", "max_paragraphs", "minutes", "seed", "max_tokens", "max_sentences",
               "vae_layers", "vae_encoder", "svae_steps", "sllm_steps", "precision", "prompt", "new_sentences", "lora_r", "distill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DemoSettings()
    parser.add_argument("--model", default=None, help="backbone: 'smollm2' (default, offline), a Hugging Face "
                        "causal-LM id (e.g. facebook/opt-125m, needs the hub) or a local folder")
    parser.add_argument("--data", nargs="+", default=None, metavar="PATH",
                        help="your own text instead of the packaged corpus: .txt (paragraphs separated by blank "
                        "lines), .jsonl ('content' field), .parquet, or folders of them")
    parser.add_argument("--corpus", choices=CORPORA, default=None, help=f"packaged corpus (default {d.corpus})")
    parser.add_argument("--max-paragraphs", type=int, default=None, help="use only the first N paragraphs")
    parser.add_argument("--minutes", type=float, default=None,
                        help=f"wall-time budget of the whole command, loading included; every phase keeps to its share "
                        f"(default {d.minutes:g}, at least 1)")
    parser.add_argument("--out", default=None, help="run folder (default runs/demo-<timestamp>)")
    parser.add_argument("--resume", default=None, metavar="RUN", help="continue RUN, reusing its finished phases")
    parser.add_argument("--prompt", default=None, help="prompt for the generation step (default: held-out text)")
    parser.add_argument("--new-sentences", type=int, default=None, help=f"sentences to generate (default {d.new_sentences})")
    parser.add_argument("--seed", type=int, default=None, help=f"random seed (default {d.seed})")
    parser.add_argument("--max-tokens", type=int, default=None, help=f"tokens per segment at most (default {d.max_tokens})")
    parser.add_argument("--max-sentences", type=int, default=None,
                        help=f"sentences per SentenceLLM training paragraph (default {d.max_sentences})")
    parser.add_argument("--vae-layers", type=int, default=None, help=f"SentenceVAE layers per stack (default {d.vae_layers})")
    parser.add_argument("--vae-encoder", choices=("transformer", "positional"), default=None,
                        help=f"SentenceVAE encoder: positional (order-preserving, one linear layer over the flattened "
                             f"positions) or transformer (blocks + mean pooling) (default {d.vae_encoder})")
    parser.add_argument("--lora-r", type=int, default=None, help=f"LoRA rank in the backbone (default {d.lora_r})")
    parser.add_argument("--distill", type=float, default=None,
                        help=f"weight of distillation from the un-grafted backbone into the sentence decoder "
                             f"(KL per token; 0 = off; default {d.distill})")
    parser.add_argument("--svae-steps", type=int, default=None, help="cap on SentenceVAE steps (default: time budget)")
    parser.add_argument("--sllm-steps", type=int, default=None, help="cap on SentenceLLM steps (default: time budget)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="training precision; auto = bf16 autocast where the CPU has native bf16 (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, usually one per core); not stored in the run")


STARTED_ENV = "GRAFTLM_DEMO_STARTED"  # epoch seconds; scripts/demo.sh sets it before its environment setup


def command_start(env: dict[str, str], now_perf: float, now_epoch: float) -> tuple[float, float]:
    """(perf_counter value the budget counts from, seconds before this process counted in) — the
    environment setup of ``make demo`` counts in the budget when ``GRAFTLM_DEMO_STARTED`` says
    when it began (ignored unless it lies in the last hour)."""
    try:
        before = now_epoch - float(env.get(STARTED_ENV, ""))
    except ValueError:
        return now_perf, 0.0
    if not 0.0 <= before <= 3600.0:
        return now_perf, 0.0
    return now_perf - before, before


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    given = {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k, None) is not None}
    return DemoSettings.from_dict(given)


def _open_or_create(args: argparse.Namespace):
    if args.resume:
        clash = [k for k in (*RUN_OPTIONS, "out") if getattr(args, k, None) is not None]
        if clash:
            raise ValueError(f"--resume takes every setting from {args.resume}/state.json; drop "
                             + ", ".join("--" + k.replace("_", "-") for k in clash))
        run = RunFolder.open(args.resume)
        # runs made before the setting existed trained (or are training) the transformer encoder
        return run, DemoSettings.from_dict({"vae_encoder": "transformer", **run.state["settings"]})
    settings = settings_from_args(args)
    check_model_argument(settings.model)
    load_documents(settings)  # --data problems show before a run folder is made
    out = Path(args.out) if args.out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    run = RunFolder.create(out, settings.to_dict())
    run.state["command"] = "graftlm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run.save()
    return run, settings


def run(args: argparse.Namespace) -> int:
    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        run_folder, settings = _open_or_create(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if run_folder.complete:
        print(f"{run_folder.path} is already complete; its closing table:\n\n{closing_table(run_folder)}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"graftlm demo → {run_folder.path} (budget {settings.minutes:g} min; Ctrl-C leaves a resumable run)")


    launched = getattr(args, "started", time.perf_counter())  # set by graftlm.cli.main
    started, before = command_start(dict(os.environ), launched, time.time() - (time.perf_counter() - launched))
    if before >= 1.0 and not args.resume:
        print(f"(the {before:.0f} s of environment setup before this count towards the budget)")
    else:
        started = launched
    session = DemoSession(run_folder, settings, started=started)
    try:
        run_phases(session)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_folder.state["elapsed"] = round(session.elapsed(), 2)
        run_folder.save()
        print(f"\ninterrupted: finished phases and a checkpoint of the current training phase are saved in "
              f"{run_folder.path}.\nContinue with: graftlm demo --resume {run_folder.path}", file=sys.stderr)
        return 130

    elapsed, budget = run_folder.state.get("elapsed", 0.0), settings.minutes * 60
    print(f"\n{closing_table(run_folder)}\n")
    busy = busy_summary(run_folder)
    if busy:
        print(busy)
    over = f", {100 * (elapsed / budget - 1):.0f} % over" if elapsed > budget else ""
    print(f"done in {elapsed:.0f} s (budget {budget:.0f} s{over}). Report: {run_folder.path / 'report.md'}")
    print(f'Try: graftlm generate {run_folder.path} "your prompt"   |   graftlm reconstruct {run_folder.path} "a sentence"')
    return 0
