"""The SentenceLLM side of the benchmarks on a tiny grafted OPT (no timing assertions)."""

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from graftlm.bench import suite
from graftlm.evaluation.memory import kv_cache_bytes
from graftlm.bench.models import Backbone
from graftlm.evaluation.throughput import lean_generate, sllm_runner
from graftlm.tokenization import ByteTokenizer

TEXT = "One, two. Three four five? Six; seven: eight. Nine ten eleven, twelve."


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=259, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                    max_position_embeddings=64, word_embed_proj_dim=16)
    return Backbone("tiny-opt", OPTForCausalLM(cfg).eval(), ByteTokenizer())


def test_grafting_for_the_benchmark_leaves_the_backbone_usable(backbone):
    suite.build_sllm(backbone, 1)
    assert lean_generate(backbone.model, torch.tensor([[5, 6, 7]]), 3).shape == (1, 3)


def test_sllm_runner_produces_exactly_the_fixed_token_count(backbone):
    sllm = suite.build_sllm(backbone, 1)
    tok = backbone.tokenizer
    x = torch.tensor([tok.encode("Hello there, friend. How are you"), tok.encode("It rains. Bring an umbrella, ok!")])
    prompts = suite.prompt_segments(backbone.tokenizer, x, sllm.vae.config, 4)
    assert sllm_runner(sllm, prompts, 10, 4)() == 2 * 10


def test_sllm_prefill_has_one_cache_position_per_sentence(backbone):
    sllm = suite.build_sllm(backbone, 1)
    seg = suite.default_segmenter(backbone.tokenizer)
    _, positions = suite.sllm_prefill_cache(sllm, TEXT, backbone.tokenizer, seg)
    assert positions == len(seg.split(TEXT))


def test_sllm_prefill_cache_bytes_are_per_sentence_not_per_token(backbone):
    sllm = suite.build_sllm(backbone, 1)
    seg = suite.default_segmenter(backbone.tokenizer)
    cache, positions = suite.sllm_prefill_cache(sllm, TEXT, backbone.tokenizer, seg, chunk_sentences=2)
    cfg = backbone.config
    assert kv_cache_bytes(cache) == 2 * cfg.num_hidden_layers * positions * cfg.hidden_size * 4


def test_the_positional_encoder_option_grafts_issue_19s_encoder_and_still_generates(backbone):
    import dataclasses

    positional = dataclasses.replace(backbone, vae_encoder="positional")
    sllm = suite.build_sllm(positional, 1)
    assert sllm.vae.config.encoder == "positional" and suite.build_sllm(backbone, 1).vae.config.encoder == "transformer"
    tok = backbone.tokenizer
    prompts = suite.prompt_segments(tok, torch.tensor([tok.encode("Hello there, friend. How are you")]),
                                    sllm.vae.config, 4)
    assert sllm_runner(sllm, prompts, 10, 4)() == 10
