"""The closing table's measurements, all taken in the demo run itself on the same machine.

* tokens/s: the backbone's lean KV-cached greedy loop vs the SentenceLLM in fixed-length mode
  (stop head and eos ignored, sentences of the held-out mean length), exactly the same number of
  output tokens from the same held-out prompt, batch 1, fp32, timed in interleaved rounds
  (`graftlm.bench.throughput`);
* KV-cache bytes per text token after prefilling the same held-out text (bytes of the cache
  tensors, `graftlm.bench.memory.kv_cache_bytes`);
* causal PPL on held-out paragraphs: the SentenceLLM's sentence decoder vs the backbone's own
  next-token PPL on exactly those tokens (`graftlm.training.evaluate`);
* backbone forward passes per sentence: one per token for the backbone, one per sentence for the
  SentenceLLM (plus tokens + 1 steps of the small sentence decoder).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from graftlm.bench.memory import backbone_prefill_cache, has_learned_positions, kv_cache_bytes
from graftlm.bench.suite import prompt_segments, sllm_prefill_cache
from graftlm.bench.throughput import lean_loop_runner, prompt_batch, sllm_runner, time_interleaved
from graftlm.training.evaluate import backbone_ppl, evaluate_sllm

PROMPT_TOKENS = 32
KV_TOKENS = 256


def position_limit(backbone: torch.nn.Module) -> int | None:
    """Hard position limit of a learned-position backbone (OPT), else None."""
    return getattr(backbone.config, "max_position_embeddings", None) if has_learned_positions(backbone) else None


def text_tokens(tokenizer: Any, docs: list[str], n: int) -> list[int]:
    """At least ``n`` token ids of ``docs`` joined by blank lines (repeated if they are shorter)."""
    text = "\n\n".join(docs)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the held-out text has no tokens")
    while len(ids) < n:
        ids = ids + ids
    return ids


@torch.inference_mode()
def perplexity(sllm: Any, backbone: torch.nn.Module, windows: list[list[list[int]]], pad_id: int) -> dict[str, Any]:
    sllm.eval()
    ours = evaluate_sllm(sllm, windows, pad_id=pad_id, batch_size=4)
    theirs = backbone_ppl(backbone, windows, batch_size=4)
    return {"sllm_ppl_tokens": ours["sllm_ppl_tokens"], "sllm_ppl": ours["sllm_ppl"],
            "termination_accuracy": ours["termination_accuracy"], "backbone_ppl": theirs["backbone_ppl"],
            "ppl_targets": theirs["backbone_targets"], "ppl_paragraphs": len(windows)}


def throughput(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, ids: list[int], *, new_tokens: int,
               sentence_len: int, repeats: int = 3) -> dict[str, Any]:
    limit = position_limit(backbone)
    prompt_tokens = PROMPT_TOKENS if limit is None else max(2, min(PROMPT_TOKENS, limit - new_tokens - 1))
    x = prompt_batch(ids, 1, prompt_tokens)
    prompts = prompt_segments(tokenizer, x, sllm.vae.config, sentence_len)
    timings = time_interleaved({
        "backbone": (lean_loop_runner(backbone, x, new_tokens), None),
        "sllm": (sllm_runner(sllm, prompts, new_tokens, sentence_len), None),
    }, repeats=repeats)
    return {"backbone_tokens_per_s": timings["backbone"].tokens_per_s, "sllm_tokens_per_s": timings["sllm"].tokens_per_s,
            "backbone_seconds": timings["backbone"].seconds, "sllm_seconds": timings["sllm"].seconds,
            "bench_new_tokens": new_tokens, "bench_prompt_tokens": prompt_tokens, "bench_sentence_len": sentence_len,
            "bench_repeats": repeats}


def kv_bytes(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, ids: list[int], segmenter: Any) -> dict[str, Any]:
    limit = position_limit(backbone)
    n = KV_TOKENS if limit is None else min(KV_TOKENS, limit)
    ids = ids[:n]
    base = kv_cache_bytes(backbone_prefill_cache(backbone, torch.tensor([ids])))
    text = tokenizer.decode(ids)
    segments = segmenter.split(text)
    n_sllm = sum(len(r) for r in tokenizer(segments, add_special_tokens=False)["input_ids"])
    cache, positions = sllm_prefill_cache(sllm, text, tokenizer, segmenter)
    ours = kv_cache_bytes(cache)
    return {"kv_tokens": n, "backbone_kv_bytes_per_token": base / n, "sllm_kv_bytes_per_token": ours / max(n_sllm, 1),
            "sllm_kv_positions": positions, "sllm_kv_text_tokens": n_sllm}


def measure_all(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, *, windows: list[list[list[int]]],
                heldout_docs: list[str], segmenter: Any, pad_id: int, new_tokens: int, sentence_len: int,
                mean_segment_tokens: float, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """All closing-table numbers as one flat dict (see the module docstring)."""
    sllm.eval()
    backbone.eval()
    out: dict[str, Any] = {}
    progress("causal perplexity")
    out.update(perplexity(sllm, backbone, windows, pad_id))
    ids = text_tokens(tokenizer, heldout_docs, max(KV_TOKENS, PROMPT_TOKENS))
    progress("tokens/s")
    out.update(throughput(sllm, backbone, tokenizer, ids, new_tokens=new_tokens, sentence_len=sentence_len))
    progress("KV-cache bytes")
    out.update(kv_bytes(sllm, backbone, tokenizer, ids, segmenter))
    progress("steps per sentence")
    out.update({"backbone_steps_per_sentence": mean_segment_tokens, "sllm_body_steps_per_sentence": 1.0,
                "sllm_decoder_steps_per_sentence": mean_segment_tokens + 1.0})
    return out
