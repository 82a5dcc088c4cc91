"""attention="bidirectional": the authors' leak reproduced on purpose (warned, never the default),
switchable after training, kept through save/load, and a real leak (the future changes the past)."""

from __future__ import annotations

import warnings

import pytest
import torch

from graftlm import graft
from graftlm.sllm.leak import LeakyAttentionWarning, set_attention

from fixtures.tiny_models import BACKBONES, TEXTS, one_thread, paragraphs_batch, tiny_vae  # noqa: F401
from test_sllm_causal import leak


@pytest.fixture(scope="module")
def batch():
    return paragraphs_batch(TEXTS)


def test_causal_is_the_default_and_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sllm = graft(BACKBONES["opt"](), tiny_vae())
    assert sllm.graft_options["attention"] == "causal"


def test_bidirectional_warns():
    with pytest.warns(LeakyAttentionWarning, match="LATER sentences"):
        graft(BACKBONES["opt"](), tiny_vae(), attention="bidirectional")


def test_unknown_attention_is_refused_before_the_backbone_is_modified():
    model = BACKBONES["opt"]()
    with pytest.raises(ValueError, match="attention must be one of"):
        graft(model, tiny_vae(), attention="leaky")
    assert model.model.decoder.embed_tokens is not None


@pytest.mark.parametrize("name", list(BACKBONES))
def test_bidirectional_body_sees_the_future(name, batch):
    with pytest.warns(LeakyAttentionWarning):
        sllm = graft(BACKBONES[name](), tiny_vae(), attention="bidirectional").eval()
    assert leak(sllm, batch, 2) > 1e-3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_switching_back_to_causal_removes_the_leak(name, batch):
    with pytest.warns(LeakyAttentionWarning):
        sllm = graft(BACKBONES[name](), tiny_vae(), attention="bidirectional").eval()
    set_attention(sllm, "causal")
    assert leak(sllm, batch, 2) < 1e-5


def test_padding_slots_stay_invisible_in_bidirectional_mode(batch):
    """A paragraph alone gives the same hidden states as inside a padded batch."""
    with pytest.warns(LeakyAttentionWarning):
        sllm = graft(BACKBONES["llama"](), tiny_vae(), attention="bidirectional").eval()
    with torch.no_grad():
        together = sllm(**batch.as_model_inputs())
        b = 1  # the shortest paragraph: padded in the batch
        s = int(batch.sentence_mask[b].sum())
        assert s < batch.sentence_mask.shape[1]
        alone = sllm(batch.input_ids[b:b + 1, :s], batch.token_mask[b:b + 1, :s], batch.sentence_mask[b:b + 1, :s])
    torch.testing.assert_close(alone.hidden_states[0], together.hidden_states[b, :s], atol=1e-5, rtol=1e-5)


def test_attention_mode_survives_save_and_load(tmp_path):
    from graftlm import load

    with pytest.warns(LeakyAttentionWarning):
        sllm = graft(BACKBONES["opt"](), tiny_vae(), attention="bidirectional")
    sllm.save_pretrained(tmp_path, save_backbone="weights")
    with pytest.warns(LeakyAttentionWarning):
        loaded = load(tmp_path)
    assert loaded.graft_options["attention"] == "bidirectional"


def test_recipe_key_reaches_the_graft():
    from graftlm.training.models import build
    from graftlm.training.recipes import TrainConfig

    cfg = TrainConfig(model="sllm", backbone="tiny-opt", tokenizer="byte", hidden_size=32, num_heads=4,
                      attention="bidirectional", max_tokens=16).validate()
    with pytest.warns(LeakyAttentionWarning):
        built = build(cfg)
    assert built.model.graft_options["attention"] == "bidirectional"
    with pytest.raises(ValueError, match="attention"):
        TrainConfig(model="sllm", backbone="tiny-opt", attention="both").validate()
