"""Speed and KV-memory measurements shared by the demo, ``graftlm eval`` and ``graftlm bench``.

* tokens/s: the backbone's lean KV-cached greedy loop vs the SentenceLLM in fixed-length mode
  (stop head and eos ignored, sentences of a fixed length), exactly the same number of output
  tokens from the same prompt, timed in interleaved rounds (`graftlm.evaluation.throughput`);
* KV-cache bytes per text token after prefilling the same text (bytes of the cache tensors).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from graftlm.evaluation.memory import (
    backbone_prefill_cache,
    cache_length,
    has_learned_positions,
    kv_cache_bytes,
)
from graftlm.evaluation.throughput import (
    lean_loop_runner,
    prompt_batch,
    sllm_runner,
    time_interleaved,
)
from graftlm.segmenter import RegexSegmenter, segment_and_tokenize

PROMPT_TOKENS = 32
KV_TOKENS = 256


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A structural copy of ``model`` whose parameters and buffers are the *same tensors*: grafting
    the copy strips only the copy's modules, the original stays intact, and no weight is duplicated."""
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def prompt_segments(tokenizer: Any, input_ids: torch.Tensor, vae_cfg: Any, max_tokens: int) -> Any:
    """The same prompts as the baselines' ``input_ids`` (B, P), as a `SegmentedBatch` whose
    segments have at most ``max_tokens`` tokens (generation refuses prompt sentences longer than
    its per-sentence decode budget)."""
    texts = [tokenizer.decode(row) for row in input_ids.tolist()]
    seg = RegexSegmenter(max_tokens=min(max_tokens, vae_cfg.max_segment_tokens or 64), tokenizer=tokenizer)
    return segment_and_tokenize(texts, tokenizer, seg, pad_token_id=vae_cfg.pad_token_id)


@torch.inference_mode()
def sllm_prefill_cache(sllm: Any, text: str, tokenizer: Any, segmenter: Any,
                       chunk_sentences: int = 512) -> tuple[Any, int]:
    """Prefill ``text`` into the SentenceLLM's body cache, the way generation does: segment,
    encode every sentence with the VAE (``sentence_inputs``), run the body over the sentence
    vectors with the adapter's own cache (``run_body``), ``chunk_sentences`` at a time.

    Returns (cache, cache positions). Raises ValueError if the sentences exceed the body's positions.
    """
    batch = segment_and_tokenize([text], tokenizer, segmenter, pad_token_id=sllm.vae.config.pad_token_id)
    batch = batch.to(sllm.device)
    sm, ids, tm = batch.sentence_mask[0], batch.input_ids[0], batch.token_mask[0]
    n = int(sm.sum())
    if sllm.max_positions is not None and n > sllm.max_positions:
        raise ValueError(f"{n} sentences exceed the backbone's {sllm.max_positions} positions")
    cache = sllm.adapter.new_cache(sllm.body)
    for start in range(0, n, chunk_sentences):
        end = min(n, start + chunk_sentences)
        vec = sllm.sentence_inputs(ids[None, start:end], tm[None, start:end], sm[None, start:end])  # (1, k, d)
        mask = torch.ones(1, end, dtype=torch.long, device=vec.device)
        pos = torch.arange(start, end, device=vec.device)[None]
        _, cache = sllm.run_body(vec, mask, pos, past_key_values=cache, use_cache=True)
    return cache, cache_length(cache)


def position_limit(backbone: torch.nn.Module) -> int | None:
    """Hard position limit of a learned-position backbone (OPT), else None."""
    return getattr(backbone.config, "max_position_embeddings", None) if has_learned_positions(backbone) else None


def text_tokens(tokenizer: Any, docs: list[str], n: int) -> list[int]:
    """At least ``n`` token ids of ``docs`` joined by blank lines (repeated if they are shorter)."""
    ids = tokenizer("\n\n".join(docs), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the held-out text has no tokens")
    while len(ids) < n:
        ids = ids + ids
    return ids


def throughput(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, ids: list[int], *, new_tokens: int,
               sentence_len: int, repeats: int = 3) -> dict[str, Any]:
    """Batch-1 tokens/s of the backbone's lean loop and of the SentenceLLM, same prompt and output length."""
    limit = position_limit(backbone)
    prompt_tokens = PROMPT_TOKENS if limit is None else max(2, min(PROMPT_TOKENS, limit - new_tokens - 1))
    x = prompt_batch(ids, 1, prompt_tokens)
    prompts = prompt_segments(tokenizer, x, sllm.vae.config, sentence_len)
    timings = time_interleaved({
        "backbone": (lean_loop_runner(backbone, x, new_tokens), None),
        "sllm": (sllm_runner(sllm, prompts, new_tokens, sentence_len), None),
    }, repeats=repeats)
    out = {"backbone_tokens_per_s": timings["backbone"].tokens_per_s, "sllm_tokens_per_s": timings["sllm"].tokens_per_s,
           "backbone_seconds": timings["backbone"].seconds, "sllm_seconds": timings["sllm"].seconds,
           "bench_new_tokens": new_tokens, "bench_prompt_tokens": prompt_tokens, "bench_sentence_len": sentence_len,
           "bench_repeats": repeats}
    for side in ("backbone", "sllm"):  # CPU time beside wall clock, when the timer measured it
        cpu = getattr(timings[side], "cpu_seconds", None)
        if cpu is not None:
            out[f"{side}_cpu_seconds"] = cpu
    return out


def kv_bytes(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, ids: list[int], segmenter: Any) -> dict[str, Any]:
    """KV-cache bytes per text token of both sides after prefilling the same text."""
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
