"""Output tokens/s, backbone (HF generate, lean loop) vs grafted SentenceLLM H1/H2/H4."""

from __future__ import annotations

import pytest

from graftlm.bench import suite
from graftlm.bench.macs import mac_bound
from graftlm.bench.corpus import text_with_tokens
from graftlm.evaluation.throughput import hf_generate_runner, lean_loop_runner, prompt_batch, sllm_runner

PROMPT_TOKENS = 64
_SLLMS: dict[tuple[str, int], object] = {}


def _prompts(backbone, batch):
    _, ids = text_with_tokens(backbone.tokenizer, batch * PROMPT_TOKENS)
    return prompt_batch(ids, batch, PROMPT_TOKENS)


def _record(benchmark, tokens: int, **extra):
    benchmark.extra_info.update(extra)
    benchmark.extra_info["tokens"] = tokens
    benchmark.extra_info["tokens_per_s"] = tokens / benchmark.stats.stats.median


@pytest.mark.parametrize("method", ["hf_generate", "lean_loop"])
def test_backbone(benchmark, backbone, batch, new_tokens, method):
    x = _prompts(backbone, batch)
    make = hf_generate_runner if method == "hf_generate" else lean_loop_runner
    benchmark.group = f"{backbone.name} batch {batch}"
    n = benchmark.pedantic(make(backbone.model, x, new_tokens), rounds=2, iterations=1, warmup_rounds=1)
    _record(benchmark, n, backbone=backbone.name, batch=batch, method=method)


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_sllm(benchmark, backbone, batch, new_tokens, sentence_len, layers):
    key = (backbone.name, layers)
    if key not in _SLLMS:
        _SLLMS.clear()
        _SLLMS[key] = suite.build_sllm(backbone, layers)
    sllm = _SLLMS[key]
    prompts = suite.prompt_segments(backbone.tokenizer, _prompts(backbone, batch), sllm.vae.config, sentence_len)
    bound = mac_bound(backbone.config, suite.vae_config(backbone, layers), sentence_len,
                      prompt_tokens=PROMPT_TOKENS, new_tokens=new_tokens)
    benchmark.group = f"{backbone.name} batch {batch}"
    n = benchmark.pedantic(sllm_runner(sllm, prompts, new_tokens, sentence_len), rounds=2, iterations=1,
                           warmup_rounds=1)
    _record(benchmark, n, backbone=backbone.name, batch=batch, method=f"sllm-H{layers}",
            sentence_len=sentence_len, mac_bound=bound.ratio)
