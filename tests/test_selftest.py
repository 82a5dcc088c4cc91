"""The graft-time self-test refuses bodies that would compute something wrong, before modifying
the model, and is skipped for architectures an adapter declares verified."""

from __future__ import annotations

import pytest
import torch

from graftlm import graft
from graftlm.plugins.selftest import SelfTestError, probe
from graftlm_adapters.generic import GenericAdapter
from graftlm_adapters.llama import LlamaAdapter

from fixtures.tiny_models import one_thread, tiny_gpt2, tiny_llama, tiny_vae  # noqa: F401


class _Leaky(GenericAdapter):
    """Shows every position the whole row (a 4D all-True mask): the authors' leak."""

    name = "leaky"

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        B, L = inputs_embeds.shape[:2]
        P = attention_mask.shape[1] - L
        full = attention_mask[:, None, None, :].expand(B, 1, L, P + L)
        return super().forward(body, inputs_embeds, full, position_ids, past_key_values, use_cache)


class _NoMask(GenericAdapter):
    """Drops the padding mask: padding is attended to."""

    name = "no-mask"

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        return super().forward(body, inputs_embeds, torch.ones_like(attention_mask), position_ids, past_key_values, use_cache)


class _NoPositions(GenericAdapter):
    """Ignores the given positions: rotary positions then come from the column index."""

    name = "no-positions"

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        P = attention_mask.shape[1] - inputs_embeds.shape[1]
        columns = torch.arange(P, attention_mask.shape[1]).expand_as(position_ids)
        return super().forward(body, inputs_embeds, attention_mask, columns, past_key_values, use_cache)


class _ForgetsCache(GenericAdapter):
    """Drops the cache on every call: a cached step sees only itself."""

    name = "forgets-cache"

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        L = inputs_embeds.shape[1]
        return super().forward(body, inputs_embeds, attention_mask[:, -L:], position_ids, None, use_cache)


class _NoCache(GenericAdapter):
    """Runs, but cannot keep a cache for generation."""

    name = "no-cache"

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        if use_cache:
            raise TypeError("this body keeps no cache")
        return super().forward(body, inputs_embeds, attention_mask, position_ids)


@pytest.mark.parametrize(
    ("adapter", "words"),
    [
        (_Leaky(), "it is not causal"),
        (_NoMask(), "ignores the padding mask or the position ids"),
        (_NoPositions(), "ignores the padding mask or the position ids"),
        (_ForgetsCache(), "a cached step gives different states"),
        (_NoCache(), "cannot keep a cache"),
    ],
)
def test_a_wrong_body_is_refused_before_anything_is_modified(adapter, words):
    model = tiny_gpt2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SelfTestError, match=words) as err:
        graft(model, tiny_vae(), own_vocab=True, adapter=adapter)
    assert "GPT2LMHeadModel" in str(err.value)
    assert model.transformer.wte is not None and model.lm_head is not None
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_a_correct_body_passes_the_probe():
    model = tiny_gpt2()
    adapter = GenericAdapter()
    probe(adapter, adapter.body(model), "GPT2LMHeadModel")  # raises on failure


def test_the_probe_restores_training_mode():
    model = tiny_gpt2().train()
    adapter = GenericAdapter()
    probe(adapter, adapter.body(model), "GPT2LMHeadModel")
    assert all(m.training for m in model.modules())


class _Counting(LlamaAdapter):
    calls = 0

    def forward(self, *args, **kwargs):
        _Counting.calls += 1
        return super().forward(*args, **kwargs)


def test_verified_architecture_skips_the_probe_and_unverified_runs_it():
    _Counting.calls = 0
    graft(tiny_llama(), tiny_vae(), own_vocab=True, adapter=_Counting())
    assert _Counting.calls == 0

    class _Unverified(_Counting):
        verified_model_types = ()

    graft(tiny_llama(), tiny_vae(), own_vocab=True, adapter=_Unverified())
    assert _Counting.calls == 3  # the probe's prefill and cached step, then the stripped body's smoke run


def test_mamba_needs_its_own_adapter():
    """The generic adapter's cached steps on Mamba drift (it masks the wrong positions); the mamba
    adapter passes only the new positions' mask (adapters/mamba.py)."""
    from fixtures.tiny_archs import VOCAB, tiny_arch
    from graftlm.plugins import find_adapter

    assert find_adapter(tiny_arch("mamba")).name == "mamba"
    with pytest.raises(SelfTestError, match="MambaForCausalLM.*a cached step gives different states"):
        graft(tiny_arch("mamba"), tiny_vae(vocab=VOCAB), adapter=GenericAdapter())


class _KeepsEmbedding(GenericAdapter):
    """Forgets to remove the token embedding."""

    name = "keeps-embedding"

    def strip(self, model):
        model.lm_head = None
        return model.base_model


def test_an_embedding_left_after_strip_is_refused_and_rolled_back():
    model = tiny_gpt2()
    head = model.lm_head
    with pytest.raises(SelfTestError, match=r"vocabulary-sized embeddings besides its token embedding \(wte\).*rolled back"):
        graft(model, tiny_vae(), own_vocab=True, adapter=_KeepsEmbedding())
    assert model.lm_head is head


def test_a_second_vocabulary_table_is_refused_before_anything_is_modified():
    model = tiny_gpt2()
    model.transformer.lookup = torch.nn.Embedding(model.config.vocab_size, 4)  # Gemma-3n-like per-layer table
    with pytest.raises(SelfTestError, match=r"\(lookup\).*The model was not modified"):
        graft(model, tiny_vae(), own_vocab=True)
    assert model.transformer.wte is not None and model.lm_head is not None
