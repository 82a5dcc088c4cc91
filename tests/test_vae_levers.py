"""Issue 19's SentenceVAE levers: the order-preserving encoder, prefix conditioning, warm start,
the sampled training head (reported losses stay full-softmax)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from graftlm.vae import SentenceVAE, SentenceVAEConfig

V, H = 40, 32


def make(**kw) -> SentenceVAE:
    torch.manual_seed(0)
    base = dict(vocab_size=V, hidden_size=H, num_heads=4, num_layers=1, max_tokens=10, init_std=0.3)
    return SentenceVAE(SentenceVAEConfig(**{**base, **kw})).eval()


def batch(rng, rows=4, length=7):
    ids = torch.randint(3, V, (rows, length), generator=rng)
    mask = torch.ones(rows, length, dtype=torch.bool)
    mask[1 % rows, 4:] = False
    mask[2 % rows, 2:] = False
    return ids, mask


def test_positional_encoder_padding_contributes_nothing(rng):
    model = make(encoder="positional")
    ids, mask = batch(rng)
    wider = torch.cat([ids, torch.randint(3, V, (4, 3), generator=rng)], 1)  # junk under the padding
    wider_mask = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], 1)
    junk = ids.masked_fill(~mask, 17)
    torch.testing.assert_close(model.encode(wider, wider_mask), model.encode(ids, mask))
    torch.testing.assert_close(model.encode(junk, mask), model.encode(ids, mask))


def test_positional_encoder_keeps_the_order(rng):
    model = make(encoder="positional")
    ids = torch.tensor([[5, 6, 7, 8]])
    swapped = torch.tensor([[6, 5, 7, 8]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert not torch.allclose(model.encode(ids, mask), model.encode(swapped, mask), atol=1e-4)


def test_positional_encoder_batch_equals_alone(rng):
    model = make(encoder="positional")
    ids, mask = batch(rng)
    together = model.encode(ids, mask)
    for i in range(len(ids)):
        n = int(mask[i].sum())
        torch.testing.assert_close(model.encode(ids[i : i + 1, :n], mask[i : i + 1, :n]), together[i : i + 1])


def test_positional_encoder_accepts_max_tokens_and_rejects_more():
    model = make(encoder="positional")
    assert model.config.max_segment_tokens == 10
    ok = torch.randint(3, V, (1, 10))
    assert model.encode(ok, torch.ones_like(ok, dtype=torch.bool)).shape == (1, H)
    long = torch.randint(3, V, (1, 11))
    with pytest.raises(ValueError, match="allows at most 10"):
        model.encode(long, torch.ones_like(long, dtype=torch.bool))


def test_prefix_conditioning_has_no_cross_attention_and_reads_the_vector(rng):
    model = make(conditioning="prefix", memory_slots=3)
    names = list(model.state_dict())
    assert not any("cross_attn" in n or "norm2" in n for n in names if n.startswith("decoder."))
    assert model.decoder.expand.weight.shape == (3 * H, H)
    ids = torch.randint(3, V, (2, 7), generator=rng)
    v = torch.randn(2, H, generator=rng)
    assert not torch.allclose(model.decoder(v, ids), model.decoder(v + 1.0, ids), atol=1e-4)


def test_prefix_decoder_is_causal(rng):
    model = make(conditioning="prefix", memory_slots=2)
    ids = torch.randint(3, V, (2, 7), generator=rng)
    v = torch.randn(2, H, generator=rng)
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % V
    a, b = model.decoder(v, ids), model.decoder(v, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)


def test_new_config_fields_survive_save_and_load(tmp_path, rng):
    model = make(encoder="positional", positional_dim=8, conditioning="prefix", memory_slots=2)
    model.save_pretrained(tmp_path)
    again = SentenceVAE.from_pretrained(tmp_path).eval()
    assert (again.config.encoder, again.config.positional_dim, again.config.memory_slots) == ("positional", 8, 2)
    ids, mask = batch(rng)
    torch.testing.assert_close(again(ids, mask).loss, model(ids, mask).loss)


@pytest.mark.parametrize("kw, match", [
    (dict(memory_slots=2), "needs conditioning='prefix'"),
    (dict(encoder="pooled"), "unknown encoder"),
    (dict(conditioning="prefix", memory_slots=0), "memory_slots must be a positive int"),
    (dict(encoder="positional", positional_dim=0), "positional_dim must be a positive int"),
])
def test_bad_lever_config_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        SentenceVAEConfig(vocab_size=V, **kw)


@pytest.mark.parametrize("encoder", ["positional", "transformer"])
def test_warm_start_first_vector_is_the_normed_mean_embedding(rng, encoder):
    model = make(encoder=encoder, num_layers=2)
    model.warm_start()
    ids, mask = batch(rng)
    emb = model.encoder.embedding.embed.weight[ids] * mask[..., None]
    mean = emb.sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(model.encode(ids, mask), F.layer_norm(mean, (H,)), atol=1e-5, rtol=1e-4)


def test_warm_start_slots_are_copies_of_the_vector(rng):
    model = make(conditioning="prefix", memory_slots=3)
    model.warm_start()
    v = torch.randn(2, H, generator=rng)
    torch.testing.assert_close(model.decoder.slots(v), v[:, None].expand(2, 3, H))


def test_warm_start_refuses_a_post_norm_encoder():
    model = SentenceVAE(SentenceVAEConfig.official(vocab_size=V, hidden_size=H, num_heads=4))
    with pytest.raises(ValueError, match="pre-norm"):
        model.warm_start()


def test_sampled_head_is_train_only_and_reported_loss_is_the_full_softmax(rng):
    model = make(loss="ce")
    model.use_sampled_head(5)
    ids, mask = batch(rng)
    out = model(ids, mask)  # eval mode: the full softmax, whatever the training head
    logits = model.decoder(out.sentence_vectors, F.pad(ids.masked_fill(~mask, 0), (1, 0), value=1))
    lengths = mask.sum(1)
    targets = F.pad(ids.masked_fill(~mask, 0), (0, 1))
    targets[torch.arange(len(ids)), lengths] = 2
    tmask = F.pad(mask, (0, 1))
    tmask[torch.arange(len(ids)), lengths] = True
    by_hand = -torch.log_softmax(logits.detach(), -1).gather(-1, targets[..., None])[..., 0][tmask].mean()
    torch.testing.assert_close(out.loss, by_hand)
    model.train()
    sampled = model(ids, mask).loss
    assert sampled.item() < by_hand.item()  # fewer competitors: a sampled softmax underestimates


def test_sampled_head_includes_the_targets_and_trains(rng):
    from graftlm.losses import sampled_softmax_logprobs

    head = torch.nn.Linear(H, V)
    hidden = torch.randn(6, H, generator=rng)
    targets = torch.tensor([3, 3, 39, 7, 0, 12])
    lp = sampled_softmax_logprobs(hidden, head, targets, negatives=4)
    assert lp.shape == (6,) and bool((lp <= 0).all())
    full = torch.log_softmax(head(hidden), -1).gather(-1, targets[:, None])[:, 0]
    assert bool((lp >= full - 1e-6).all())  # a subset's normaliser is never larger
    lp.sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_sampled_head_rejects_a_bad_count():
    with pytest.raises(ValueError, match="positive int"):
        make().use_sampled_head(0)


def _llama_decoder_vae(backbone, slots=2):
    from graftlm.vae.warm_start import llama_decoder_fields

    fields = llama_decoder_fields(backbone.config, backbone.config.num_hidden_layers)
    torch.manual_seed(0)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=backbone.config.vocab_size, encoder="positional", max_tokens=16,
                                        memory_slots=slots, **fields)).eval()
    vae.init_embeddings_from(backbone.get_input_embeddings().weight.detach())
    vae.decoder_from_backbone(backbone)
    return vae


def test_decoder_from_backbone_is_the_backbone_reading_the_slots(rng):
    from fixtures.tiny_models import tiny_llama

    backbone = tiny_llama()
    vae = _llama_decoder_vae(backbone)
    for mine, theirs in zip(vae.decoder.layers, backbone.model.layers):
        for name, p in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[name], p)
    ids = torch.randint(3, 259, (2, 6), generator=rng)
    v = torch.randn(2, 32, generator=rng)
    with torch.no_grad():
        slots = vae.decoder.slots(v)
        expected = backbone(inputs_embeds=torch.cat([slots, backbone.get_input_embeddings()(ids)], 1)).logits[:, 2:]
        torch.testing.assert_close(vae.decoder(v, ids), expected, atol=1e-5, rtol=1e-4)
        cache = vae.decoder.new_cache(v, 6)
        steps = torch.cat([vae.decoder(v, ids[:, :4], cache), vae.decoder(v, ids[:, 4:], cache)], 1)
        torch.testing.assert_close(steps, expected, atol=1e-5, rtol=1e-4)


def test_decoder_from_backbone_refuses_a_mismatch():
    from fixtures.tiny_models import tiny_llama, tiny_opt

    vae = _llama_decoder_vae(tiny_llama())
    with pytest.raises(ValueError, match="intermediate_size"):
        vae.decoder_from_backbone(_wider_ffn())
    with pytest.raises(ValueError, match="Llama-family"):
        vae.decoder_from_backbone(tiny_opt())
    with pytest.raises(ValueError, match="decoder_style='llama'"):
        make().decoder_from_backbone(tiny_llama())


def _wider_ffn():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=259, hidden_size=32, num_hidden_layers=2, intermediate_size=96,
                                        num_attention_heads=4, num_key_value_heads=2)).eval()


def test_a_grafted_positional_prefix_vae_generates_as_it_trains():
    """The SentenceLLM reads the new vectors: its cached generation equals its training forward."""
    from fixtures.tiny_models import BACKBONES, TEXTS, continued_batch, paragraphs_batch
    from graftlm import graft
    from graftlm.tokenization import ByteTokenizer

    torch.manual_seed(1)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=259, hidden_size=24, num_heads=4, num_layers=1, max_tokens=16,
                                        encoder="positional", conditioning="prefix", memory_slots=2))
    sllm = graft(BACKBONES["llama"](), vae, tokenizer=ByteTokenizer()).eval()
    prompts = paragraphs_batch(TEXTS)
    out = sllm.generate(prompts, max_new_sentences=2, return_dict=True, output_hidden_states=True,
                        ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=4)
    B = prompts.sentence_mask.shape[0]
    ids, tm, sm, counts = continued_batch(prompts, out.token_ids, 16)
    with torch.no_grad():
        full = sllm(ids, tm, sm)
    assert torch.isfinite(full.loss)
    for b in range(B):
        n = counts[b]
        torch.testing.assert_close(out.hidden_states[b], full.hidden_states[b, n - 1 : n + 2], atol=1e-5, rtol=1e-4)
