"""``graftlm generate RUN "prompt"``: continue a prompt, sentence by sentence, with a run's SentenceLLM.

``graftlm generate RUN -i`` loads the model once and then reads prompts line by line (an empty
line is skipped, end of input or ``exit`` quits). Each sentence is printed as soon as it is
decoded; the continuation starts on its own line after ``→`` and sentences are separated by
``│`` (coloured instead on a terminal; ``--plain`` prints the bare text).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Iterable, TextIO

import torch

import graftlm
from graftlm.demo.run_folder import RunFolder

ARROW, MARK = "→ ", "│"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder written by `graftlm demo`")
    parser.add_argument("prompt", nargs="?", default=None,
                        help="text to continue (one or more sentences); optional with -i")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="load the model once, then read prompts from standard input, one per line")
    parser.add_argument("--sentences", type=int, default=4, help="new sentences at most (default 4)")
    parser.add_argument("--do-sample", action="store_true",
                        help="sample each token instead of taking the most likely one (greedy, the default)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature > 0 (default 1.0; needs --do-sample)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (needs --do-sample)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample from the smallest set of tokens whose probability reaches p, 0 < p <= 1 "
                        "(needs --do-sample)")
    parser.add_argument("--no-repeat-sentence", action="store_true",
                        help="never emit a sentence the text already has (it is re-decoded with that ending blocked)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="HF-style penalty (> 1) on the tokens the text already has (default 1.0: off)")
    parser.add_argument("--seed", type=int, default=0, help="random seed when sampling (default 0)")
    parser.add_argument("--ignore-stop", action="store_true", help="always generate --sentences sentences "
                        "(default: the termination head decides when the text ends, at most --sentences)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--plain", action="store_true",
                        help="print the prompt and its continuation as bare text: no arrow, marks or colour")


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `SentenceLLM.stream` for the sampling flags (ValueError if inconsistent)."""
    given = [f"--{n.replace('_', '-')}" for n in ("temperature", "top_k", "top_p") if getattr(args, n) is not None]
    penalty = getattr(args, "repetition_penalty", 1.0)
    if not penalty > 0 or penalty == float("inf"):
        raise ValueError(f"--repetition-penalty must be a finite number > 0 (1.0 = off), got {penalty}")
    repetition: dict[str, Any] = {}
    if getattr(args, "no_repeat_sentence", False):
        repetition["no_repeat_sentence"] = True
    if penalty != 1.0:
        repetition["repetition_penalty"] = penalty
    if not args.do_sample:
        if given:
            raise ValueError(f"{', '.join(given)} only apply when sampling: add --do-sample")
        return repetition
    if args.temperature is not None and not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    out: dict[str, Any] = {"do_sample": True, "generator": torch.Generator().manual_seed(args.seed), **repetition}
    for name in ("temperature", "top_k", "top_p"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


class Printer:
    """Writes a prompt and its streamed continuation with visible sentence boundaries."""

    def __init__(self, out: TextIO, *, plain: bool) -> None:
        self.out, self.plain = out, plain
        self.colour = not plain and out.isatty() and not os.environ.get("NO_COLOR")

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def prompt(self, text: str) -> None:
        if self.plain:
            self.out.write(text)
        else:
            self.out.write(text.rstrip("\n") + "\n" + self._paint(ARROW, "2"))
        self.out.flush()

    def sentence(self, text: str, index: int) -> None:
        if self.plain:
            self.out.write(text)
        elif self.colour:  # alternate two colours instead of marks
            self.out.write(self._paint(text, "36" if index % 2 == 0 else "33"))
        else:
            self.out.write(text + MARK)
        self.out.flush()

    def end(self, count: int) -> None:
        self.out.write("\n" if self.plain or count else "(no sentence: the termination head stopped at once)\n")
        self.out.flush()


def continue_prompt(sllm: Any, prompt: str, printer: Printer, *, sentences: int, stop_head: bool,
                    sampling: dict[str, Any]) -> list[str]:
    if not prompt.strip():
        raise ValueError("the prompt is empty: give at least one sentence")
    printer.prompt(prompt)
    pieces: list[str] = []
    with torch.inference_mode():
        for step in sllm.stream(prompt, max_new_sentences=sentences, ignore_stop=not stop_head, **sampling):
            if step[0] is not None:
                printer.sentence(step[0], len(pieces))
                pieces.append(step[0])
    printer.end(len(pieces))
    return pieces


def prompts_from(stream: TextIO) -> Iterable[str]:
    ask = stream.isatty()
    while True:
        if ask:
            print("prompt> ", end="", file=sys.stderr, flush=True)
        line = stream.readline()
        if not line or line.strip() in ("exit", "quit"):
            return
        if line.strip():
            yield line.rstrip("\n")


def load_run_sllm(run_dir: str) -> Any:
    """The SentenceLLM of a finished demo run, ready to generate."""
    run = RunFolder.open(run_dir)
    run.require_trained("sllm")
    return graftlm.load(run.sllm_model_dir).eval()


def run(args: argparse.Namespace) -> int:
    try:
        if args.sentences < 1:
            raise ValueError(f"--sentences must be >= 1, got {args.sentences}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if args.prompt is None and not args.interactive:
            raise ValueError("give a prompt to continue, or -i to type prompts one per line")
        if args.prompt is not None and not args.prompt.strip():
            raise ValueError("the prompt is empty: give at least one sentence")
        sampling = sampling_options(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        print(f"loading the SentenceLLM of {args.run_dir} …", file=sys.stderr, flush=True)
        sllm = load_run_sllm(args.run_dir)
        print(f"ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        printer = Printer(sys.stdout, plain=args.plain)
        opts = dict(sentences=args.sentences, stop_head=not args.ignore_stop, sampling=sampling)
        if args.prompt is not None:
            continue_prompt(sllm, args.prompt, printer, **opts)
        if args.interactive:
            for prompt in prompts_from(sys.stdin):
                try:
                    continue_prompt(sllm, prompt, printer, **opts)
                except ValueError as err:  # one bad prompt does not end the session
                    print(f"error: {err}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
