"""Long context: a SentenceLLM reads a document several times longer (in tokens) than its
backbone's position table, because the backbone only sees one position per sentence."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from transformers import DynamicCache

from graftlm.bench import suite
from graftlm.bench.corpus import text_with_tokens
from graftlm.bench.models import Backbone
from graftlm.evaluation.memory import (
    cache_length,
    has_learned_positions,
    kv_cache_bytes,
    track_peak_memory,
)
from graftlm.segmenter import segment_and_tokenize

Log = Callable[[str], None]


def long_context_rows(backbone: Backbone, *, factor: float = 4.25, new_tokens: int = 64, layers: int = 1,
                      log: Log = print) -> list[dict[str, Any]]:
    """Backbone at its position limit (and its failure past it) vs the SentenceLLM on a document of
    ``factor`` × ``max_position_embeddings`` tokens, prefilled and then continued by ``new_tokens``."""
    limit = int(backbone.config.max_position_embeddings)
    n_doc = int(factor * limit)
    if n_doc < 4 * limit:
        raise ValueError(f"factor must be >= 4 (the document must be >= 4x the positions), got {factor}")
    rows: list[dict[str, Any]] = []
    _, ids = text_with_tokens(backbone.tokenizer, n_doc)

    # the backbone alone: its whole position table, then the long document
    with track_peak_memory() as mem, torch.inference_mode():
        t0 = time.perf_counter()
        cache = DynamicCache()
        backbone.model(input_ids=torch.tensor([ids[:limit]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
        secs = time.perf_counter() - t0
    rows.append(dict(model=f"{backbone.name} (backbone)", tokens=limit, max_positions=limit,
                     positions=cache_length(cache), kv_bytes=kv_cache_bytes(cache), peak_rss=mem.peak_rss,
                     seconds=secs, generated=None, note="prefill of its whole position table"))
    del cache
    log(f"  {backbone.name} backbone: {limit} tokens prefilled, KV {rows[-1]['kv_bytes'] / 2**20:.1f} MB")
    note = _try_backbone(backbone, ids)
    rows.append(dict(model=f"{backbone.name} (backbone)", tokens=n_doc, max_positions=limit, positions=0,
                     kv_bytes=None, peak_rss=None, seconds=None, generated=None, note=note))
    log(f"  {backbone.name} backbone on {n_doc} tokens: {note}")

    sllm = suite.build_sllm(backbone, layers)
    cap = sllm.vae.config.max_segment_tokens or 64
    text = backbone.tokenizer.decode(ids)
    seg = suite.default_segmenter(backbone.tokenizer, None, max_tokens=cap)
    batch = segment_and_tokenize([text], backbone.tokenizer, seg, pad_token_id=sllm.vae.config.pad_token_id)
    n_sent = int(batch.sentence_mask.sum())
    with track_peak_memory() as mem:
        t0 = time.perf_counter()
        cache, positions = suite.sllm_prefill_cache(sllm, text, backbone.tokenizer, seg)
        prefill_s = time.perf_counter() - t0
        kv = kv_cache_bytes(cache)
        del cache
        t0 = time.perf_counter()
        out = sllm.generate(batch, None, max_sentences=n_sent + new_tokens, max_new_tokens=new_tokens,
                            max_tokens_per_sentence=cap, ignore_stop=True, ignore_eos=True, return_dict=True)
        gen_s = time.perf_counter() - t0
    rows.append(dict(model=f"{backbone.name}-SLLM-H{layers}", tokens=n_doc, max_positions=limit, positions=positions,
                     kv_bytes=kv, peak_rss=mem.peak_rss, seconds=prefill_s + gen_s, generated=out.num_new_tokens[0],
                     note=f"{n_sent} sentences; prefill {prefill_s:.1f} s, prefill+generate {gen_s:.1f} s"))
    log(f"  {backbone.name} SLLM on {n_doc} tokens: {positions} positions, KV {kv / 2**20:.1f} MB, "
        f"generated {out.num_new_tokens[0]} tokens")
    return rows


def _try_backbone(backbone: Backbone, ids: list[int]) -> str:
    """Run the backbone on the whole document; say what happens (OPT's learned table has no row
    for positions past its limit; RoPE models run but were never trained that far)."""
    limit = int(backbone.config.max_position_embeddings)
    if not has_learned_positions(backbone.model):
        return f"runs past {limit} positions (RoPE) but untrained there; not measured"
    try:
        with torch.inference_mode():
            backbone.model(input_ids=torch.tensor([ids[: limit + 8]]), use_cache=False, logits_to_keep=1)
    except Exception as err:  # the failure itself is the result
        return f"fails past {limit} positions: {type(err).__name__}: {str(err).splitlines()[0][:80]}"
    return f"ran {limit + 8} tokens past its {limit} positions without an error (positions wrap or clamp)"
