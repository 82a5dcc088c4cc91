"""Batch-1 peers of the SentenceLLM: HF prompt lookup (5, 10 tokens) and HF assisted generation
with the backbone's first 4 layers as draft (a probe), on docs (pydoc) and prose (KJV) prompts,
greedy. ``extra_info`` says whether the output equals plain greedy decoding."""

from __future__ import annotations

import pytest

from graftlm.bench.corpus import text_with_tokens
from graftlm.bench.peers import first_layers_draft, peer_runners
from graftlm.evaluation.throughput import lean_generate, prompt_batch

PROMPT_TOKENS = 64
_DRAFTS: dict[str, object] = {}


@pytest.mark.parametrize("source", ["pydoc", "kjv"])
@pytest.mark.parametrize("method", ["hf_generate", "prompt_lookup-5", "prompt_lookup-10", "assisted:first-4-layers"])
def test_peer(benchmark, backbone, new_tokens, source, method):
    _, ids = text_with_tokens(backbone.tokenizer, PROMPT_TOKENS, source)
    x = prompt_batch(ids, 1, PROMPT_TOKENS)
    drafts = {}
    if method.startswith("assisted"):
        if backbone.name not in _DRAFTS:
            _DRAFTS.clear()
            _DRAFTS[backbone.name] = first_layers_draft(backbone.model, 4)
        drafts["first-4-layers"] = _DRAFTS[backbone.name]
    run = peer_runners(backbone.model, x, new_tokens, sample=False, drafts=drafts, lookup=(5, 10))[method]
    benchmark.group = f"{backbone.name} batch 1 peers ({source})"
    n = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(backbone=backbone.name, batch=1, method=method, source=source, tokens=n,
                                tokens_per_s=n / benchmark.stats.stats.median,
                                equals_greedy=bool((run.last == lean_generate(backbone.model, x, new_tokens)).all()))
