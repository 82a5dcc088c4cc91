"""Research switches live outside SentenceLLM.forward: the authors' leak is an adapter wrapper that
set_attention puts on and takes off, and extra losses are terms in ``sllm.loss_terms``."""

from __future__ import annotations

import warnings

import torch

from graftlm import graft
from graftlm.sllm.leak import BidirectionalAdapter, LeakyAttentionWarning, set_attention

from fixtures.tiny_models import TEXTS, paragraphs_batch, tiny_opt, tiny_vae


def test_leak_wrapper_goes_on_and_off_with_set_attention():
    sllm = graft(tiny_opt(), tiny_vae()).eval()
    causal = sllm.adapter
    batch = paragraphs_batch(TEXTS).as_model_inputs()
    before = sllm(**batch).token_logprobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeakyAttentionWarning)
        set_attention(sllm, "bidirectional")
    assert isinstance(sllm.adapter, BidirectionalAdapter) and sllm.adapter.name == causal.name
    leaky = sllm(**batch).token_logprobs
    assert not torch.allclose(leaky, before)  # later sentences are visible now
    set_attention(sllm, "causal")
    assert sllm.adapter is causal
    torch.testing.assert_close(sllm(**batch).token_logprobs, before)


class _Constant:
    """A stand-in loss term: adds weight × 3 to the loss while training."""

    weight = 0.25

    def loss(self, input_ids, token_mask, sentence_mask, pair, decoded):
        return decoded.packed_logits.sum() * 0 + 3.0


def test_a_loss_term_is_added_while_training_only():
    sllm = graft(tiny_opt(), tiny_vae())
    batch = paragraphs_batch(TEXTS).as_model_inputs()
    plain = sllm(**batch).loss
    sllm.loss_terms["constant"] = _Constant()
    torch.testing.assert_close(sllm(**batch).loss, plain + 0.75)
    sllm.eval()
    torch.testing.assert_close(sllm(**batch).loss, plain)
