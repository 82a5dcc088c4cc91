"""Output-token throughput: backbone baselines and the grafted SentenceLLM.

Every runner is built once (model, prompts) and returns a zero-argument callable that performs one
full generation of exactly ``batch * new_tokens`` output tokens and returns that count, so the
pytest-benchmark suites and ``graftlm bench`` time the very same call.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import DynamicCache

from graftlm.plugins.adapter import cache_keyword

Runner = Callable[[], int]


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs that each produced ``tokens`` output tokens."""

    tokens: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # process CPU time (all threads)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.median

    @property
    def spread(self) -> float:
        """(max − min) / median of the runs: how noisy the machine was."""
        return (max(self.seconds) - min(self.seconds)) / self.median if len(self.seconds) > 1 else 0.0


def time_runner(run: Runner, *, repeats: int = 3, warmup: int = 1, warmup_run: Runner | None = None) -> Timing:
    """Run ``warmup`` untimed calls (of ``warmup_run``, e.g. a shorter generation, else of ``run``),
    then ``repeats`` timed calls of ``run``; returns their timings."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        (warmup_run or run)()
    timing = Timing(tokens=0)
    for _ in range(repeats):
        _timed_call(run, timing)
    return timing


def _timed_call(run: Runner, timing: Timing) -> None:
    c0, t0 = time.process_time(), time.perf_counter()
    n = run()
    _sync()
    timing.seconds.append(time.perf_counter() - t0)
    timing.cpu_seconds.append(time.process_time() - c0)
    timing.tokens = n


def time_interleaved(runners: dict[str, tuple[Runner, Runner | None]], *, repeats: int = 3) -> dict[str, Timing]:
    """Time several runners in rounds: each round calls every runner once, the order rotated
    round to round, so slow drifts of a shared machine's load affect them alike. ``runners`` maps
    a name to (timed runner, warm-up runner or None); each is warmed up once first."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(runners)
    for name in names:
        run, warm = runners[name]
        (warm or run)()
    out = {name: Timing(tokens=0) for name in names}
    for r in range(repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            _timed_call(runners[name][0], out[name])
    return out


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def prompt_batch(token_ids: list[int], batch: int, prompt_tokens: int, *, device: Any = "cpu") -> torch.Tensor:
    """(batch, prompt_tokens) long: consecutive, different windows of one long token stream."""
    need = batch * prompt_tokens
    if len(token_ids) < need:
        raise ValueError(f"need {need} tokens of text for {batch} prompts of {prompt_tokens}, got {len(token_ids)}")
    ids = torch.tensor(token_ids[:need], dtype=torch.long, device=device)
    return ids.view(batch, prompt_tokens)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def hf_generate_runner(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> Runner:
    """HF ``generate``: greedy, its KV cache, exactly ``new_tokens`` tokens (eos cannot stop it).
    The prompts are moved to the model's device once, here, not inside the timed call."""
    input_ids = input_ids.to(model_device(model))
    mask = torch.ones_like(input_ids, dtype=torch.long)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

    @torch.inference_mode()
    def run() -> int:
        out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                             min_new_tokens=new_tokens, max_new_tokens=new_tokens,
                             pad_token_id=pad, use_cache=True)
        n = out.shape[1] - input_ids.shape[1]
        if n != new_tokens:
            raise RuntimeError(f"generate produced {n} tokens, expected {new_tokens}")
        return out.shape[0] * n

    return run


@torch.inference_mode()
def lean_generate(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding the lean way: prefill, then one cached forward per token; the argmax stays
    on the device and nothing is copied to the host inside the loop.

    ``input_ids`` (B, P) long, no padding → (B, new_tokens) long.
    """
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")

    cache = DynamicCache()
    kw = cache_keyword(model)  # `cache` or `past_key_values`, whichever this transformers takes
    out = torch.empty(input_ids.shape[0], new_tokens, dtype=torch.long, device=input_ids.device)
    logits = model(input_ids=input_ids, **{kw: cache}, use_cache=True, logits_to_keep=1).logits
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    for i in range(new_tokens):
        out[:, i : i + 1] = nxt
        if i + 1 == new_tokens:
            break
        logits = model(input_ids=nxt, **{kw: cache}, use_cache=True).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
    return out


def lean_loop_runner(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> Runner:
    """`lean_generate` as a runner: the honest algorithmic baseline (only the model's own work;
    every step still pays the full LM head for its one new position). Prompts go to the model's
    device once, here."""
    input_ids = input_ids.to(model_device(model))

    def run() -> int:
        return lean_generate(model, input_ids, new_tokens).numel()

    return run


def sllm_runner(sllm: Any, batch: Any, new_tokens: int, sentence_len: int) -> Runner:
    """The grafted SentenceLLM in fixed-length mode: stop head and eos ignored, so each prompt gets
    exactly ``new_tokens`` tokens in sentences of ``sentence_len`` tokens (the last one cut).

    ``batch`` is the prompts' `SegmentedBatch` (segmenting and tokenizing the prompt is setup, as
    for the baselines, which get token ids); no tokenizer is passed, so nothing is detokenized.
    """
    batch = batch.to(sllm.device)  # once, outside the timed call
    n_prompt = int(batch.sentence_mask.sum(1).max())
    max_sentences = n_prompt + -(-new_tokens // sentence_len)

    @torch.inference_mode()
    def run() -> int:
        out = sllm.generate(batch, None, max_sentences=max_sentences, max_new_tokens=new_tokens,
                            max_tokens_per_sentence=sentence_len, ignore_stop=True, ignore_eos=True,
                            do_sample=False, return_dict=True)
        counts = list(out.num_new_tokens)
        if any(c != new_tokens for c in counts):
            raise RuntimeError(f"SLLM generate gave {counts} output tokens per prompt, expected {new_tokens} each")
        return sum(counts)

    return run
