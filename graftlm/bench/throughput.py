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

Runner = Callable[[], int]


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs that each produced ``tokens`` output tokens."""

    tokens: int
    seconds: list[float] = field(default_factory=list)

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
        t0 = time.perf_counter()
        n = run()
        _sync()
        timing.seconds.append(time.perf_counter() - t0)
        timing.tokens = n
    return timing


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


def hf_generate_runner(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> Runner:
    """HF ``generate``: greedy, its KV cache, exactly ``new_tokens`` tokens (eos cannot stop it)."""
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


def lean_loop_runner(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int) -> Runner:
    """Prefill, then one cached forward per token; argmax stays on the device, no host sync.

    The honest algorithmic baseline: nothing but the model's own work (every step still pays the
    full LM head for the one new position).
    """
    from transformers import DynamicCache

    bsz, plen = input_ids.shape

    @torch.inference_mode()
    def run() -> int:
        cache = DynamicCache()
        out = torch.empty(bsz, new_tokens, dtype=torch.long, device=input_ids.device)
        logits = model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        for i in range(new_tokens):
            out[:, i : i + 1] = nxt
            if i + 1 == new_tokens:
                break
            logits = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
        return bsz * new_tokens

    return run


def sllm_runner(sllm: Any, prompts: list[str], tokenizer: Any, new_tokens: int, sentence_len: int) -> Runner:
    """The grafted SentenceLLM in fixed-length mode: stop head and eos ignored, so each prompt gets
    exactly ``new_tokens`` tokens in sentences of ``sentence_len`` tokens (the last one cut)."""
    if new_tokens % sentence_len:
        # not an error: the last sentence is cut at the token budget, which the SLLM must honour
        pass
    max_sentences = -(-new_tokens // sentence_len)

    @torch.inference_mode()
    def run() -> int:
        out = sllm.generate(prompts, tokenizer, max_sentences=max_sentences, max_new_tokens=new_tokens,
                            max_tokens_per_sentence=sentence_len, ignore_stop=True, do_sample=False)
        return _count_tokens(out, tokenizer, len(prompts), new_tokens)

    return run


def _count_tokens(out: Any, tokenizer: Any, batch: int, expected: int) -> int:
    """Total output tokens of an SLLM ``generate`` result; checks each row got ``expected``."""
    counts = _row_token_counts(out, tokenizer)
    if counts is None:
        return batch * expected
    if len(counts) != batch or any(c != expected for c in counts):
        raise RuntimeError(f"SLLM generate gave {counts} output tokens per prompt, expected {expected} each")
    return sum(counts)


def _row_token_counts(out: Any, tokenizer: Any) -> list[int] | None:
    if isinstance(out, torch.Tensor):
        return [int(out.shape[-1])] * int(out.shape[0])
    if isinstance(out, (list, tuple)) and out:
        first = out[0]
        if isinstance(first, str):  # decoded text: re-tokenizing is not exact, trust the budget
            return None
        if isinstance(first, (list, tuple)) and first and isinstance(first[0], int):
            return [len(r) for r in out]
        if isinstance(first, (list, tuple)) and (not first or isinstance(first[0], (list, tuple))):
            return [sum(len(s) for s in r) for r in out]  # per row: list of sentences of ids
    for attr in ("token_counts", "num_tokens"):
        if hasattr(out, attr):
            v = getattr(out, attr)
            return [int(x) for x in (v.tolist() if isinstance(v, torch.Tensor) else v)]
    return None
