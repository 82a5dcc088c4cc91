"""The training forward is causal over sentences (leak test, and a detector that catches a
bidirectional body), batched correctly, and computes each loss term against the right targets."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from graftlm import graft
from graftlm.losses import focal_loss

from fixtures.tiny_models import BACKBONES, TEXTS, one_thread, paragraphs_batch, tiny_vae  # noqa: F401

LEAK_TOL = 1e-5


def _perturb_sentence(batch, k: int, seed: int = 0) -> torch.Tensor:
    """input_ids with every real token of sentence k (in every paragraph) replaced by another byte."""
    g = torch.Generator().manual_seed(seed)
    ids = batch.input_ids.clone()
    noise = torch.randint(1, 200, ids[:, k].shape, generator=g)
    ids[:, k] = torch.where(batch.token_mask[:, k], 3 + (ids[:, k] - 3 + noise) % 256, ids[:, k])
    return ids


def leak(sllm, batch, k: int) -> float:
    """Largest change, at sentence positions < k, of anything that must only see the past:
    hidden states, termination logits (the termination loss terms) and the decoder's token
    log-probs for sentences 1…k-1 (decoded from positions < k-1), when sentence k changes."""
    with torch.no_grad():
        a = sllm(**batch.as_model_inputs())
        b = sllm(_perturb_sentence(batch, k), batch.token_mask, batch.sentence_mask)
    assert not torch.equal(a.hidden_states[:, k:], b.hidden_states[:, k:]), "the perturbation changed nothing"
    return max(
        (a.hidden_states[:, :k] - b.hidden_states[:, :k]).abs().max().item(),
        (a.termination_logits[:, :k] - b.termination_logits[:, :k]).abs().max().item(),
        (a.token_logprobs[:, :k] - b.token_logprobs[:, :k]).abs().max().item(),
    )


class Bidirectional:
    """Wraps an adapter and runs the body with an all-True 4D mask: every position sees every
    other, the defect of the authors' OPT code under eager attention (reference.md §2)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def forward(self, body, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        B, L = inputs_embeds.shape[:2]
        full = torch.ones(B, 1, L, attention_mask.shape[1], dtype=torch.bool)
        return self.inner.forward(body, inputs_embeds, full, position_ids, past_key_values, use_cache)


@pytest.fixture(scope="module")
def batch():
    b = paragraphs_batch(TEXTS)
    assert b.input_ids.shape[1] >= 4
    return b


@pytest.mark.parametrize("name", list(BACKBONES))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_future_sentence_does_not_leak(name, k, batch):
    sllm = graft(BACKBONES[name](), tiny_vae(hidden=24)).eval()  # with projections
    assert leak(sllm, batch, k) < LEAK_TOL


@pytest.mark.parametrize("name", list(BACKBONES))
def test_leak_detector_catches_bidirectional_body(name, batch):
    sllm = graft(BACKBONES[name](), tiny_vae()).eval()
    sllm.adapter = Bidirectional(sllm.adapter)
    assert leak(sllm, batch, 2) > 1e-3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_paragraph_alone_equals_paragraph_in_padded_batch(name, batch):
    sllm = graft(BACKBONES[name](), tiny_vae()).eval()
    with torch.no_grad():
        together = sllm(**batch.as_model_inputs())
        for b in range(len(TEXTS)):
            s = int(batch.sentence_mask[b].sum())
            t = int(batch.token_mask[b].sum(-1).max())
            alone = sllm(batch.input_ids[b : b + 1, :s, :t], batch.token_mask[b : b + 1, :s, :t], batch.sentence_mask[b : b + 1, :s])
            assert torch.allclose(alone.hidden_states[0], together.hidden_states[b, :s], atol=1e-5)
            assert torch.allclose(alone.token_logprobs[0], together.token_logprobs[b, :s, : t + 1], atol=1e-5)


def test_decoder_targets_use_each_sentences_own_length(batch):
    sllm = graft(BACKBONES["opt"](), tiny_vae())
    out = sllm(**batch.as_model_inputs())
    lengths = batch.token_mask.sum(-1)  # (B, S)
    expected = torch.where(batch.sentence_mask, lengths + 1, 0)
    expected[:, 0] = 0  # the first sentence has no hidden state before it
    assert torch.equal(out.target_mask.sum(-1), expected)


def test_termination_loss_targets_continue_then_stop(batch):
    sllm = graft(BACKBONES["llama"](), tiny_vae())
    out = sllm(**batch.as_model_inputs())
    sm = batch.sentence_mask
    targets = torch.zeros_like(sm, dtype=torch.long)
    targets[:, :-1] = sm[:, 1:].long()  # 1 while another sentence follows, 0 at each last one
    logp = torch.log_softmax(out.termination_logits.float(), -1).gather(-1, targets[..., None])[..., 0]
    assert torch.allclose(out.termination_loss, focal_loss(logp, sm, 2.0))
    assert torch.allclose(out.loss, out.decoder_loss + out.termination_loss)


def test_single_sentence_paragraphs_have_no_decoder_targets():
    sllm = graft(BACKBONES["opt"](), tiny_vae())
    b = paragraphs_batch(["Hi there", "Bye"])
    assert b.input_ids.shape[1] == 1
    out = sllm(**b.as_model_inputs())
    assert out.decoder_loss.item() == 0.0 and not out.target_mask.any()
    out.loss.backward()  # still differentiable (termination loss)


def test_bad_forward_inputs(batch):
    sllm = graft(BACKBONES["opt"](), tiny_vae())
    ids, tm, sm = batch.input_ids, batch.token_mask, batch.sentence_mask
    with pytest.raises(ValueError, match="right-padded"):
        sllm(ids.flip(1), tm.flip(1), sm.flip(1))
    with pytest.raises(ValueError, match="disagree"):
        sllm(ids, tm & False, sm)
    with pytest.raises(ValueError, match="batch, sentences, tokens"):
        sllm(ids[0], tm[0], sm[0])
    with pytest.raises(ValueError, match="no sentences"):
        sllm(ids, tm & False, sm & False)
