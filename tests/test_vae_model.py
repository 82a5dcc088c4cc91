"""SentenceVAE model: shapes, masks, causality, the vector bottleneck, losses, bad inputs."""

from __future__ import annotations

import pytest
import torch

from graftlm.losses import cross_entropy_loss, focal_loss
from graftlm.vae import SentenceVAE, SentenceVAEConfig

V = 40


def modern(**kw):
    return SentenceVAEConfig(vocab_size=V, hidden_size=32, num_heads=4, num_layers=2, **kw)


def official(**kw):
    kw.setdefault("max_tokens", 16)
    return SentenceVAEConfig.official(vocab_size=V, hidden_size=32, num_heads=4, num_layers=2, **kw)


PRESETS = {"modern": modern, "official": official, "official_weighted": lambda: official(fusion="weighted")}


def make(preset: str, seed: int = 0) -> SentenceVAE:
    torch.manual_seed(seed)
    config = PRESETS[preset]()
    config.init_std = 0.2  # large weights so that outputs depend visibly on every input
    return SentenceVAE(config).eval()


def batch(rng, lengths=(6, 3, 5), width=None):
    width = width or max(lengths)
    ids = torch.randint(3, V, (len(lengths), width), generator=rng)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return ids, mask


@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_and_dtypes(rng, preset):
    model = make(preset)
    ids, mask = batch(rng)
    out = model(ids, mask)
    assert out.sentence_vectors.shape == (3, 32) and out.sentence_vectors.dtype == torch.float32
    assert out.logits.shape == (3, 7, V)
    assert out.token_logprobs.shape == (3, 7) and out.target_mask.dtype == torch.bool
    assert out.target_mask.sum(1).tolist() == [7, 4, 6]  # tokens + eos
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)


@pytest.mark.parametrize("preset", PRESETS)
def test_encode_ignores_padding(rng, preset):
    model = make(preset)
    ids, mask = batch(rng)
    wider_ids = torch.cat([ids, torch.randint(3, V, (3, 4), generator=rng)], dim=1)
    wider_ids[~torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)] = 7  # junk under padding
    wider_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model.encode(ids, mask), model.encode(wider_ids, wider_mask))


@pytest.mark.parametrize("preset", PRESETS)
def test_encode_row_independent_of_batch(rng, preset):
    model = make(preset)
    ids, mask = batch(rng)
    one = model.encode(ids[1:2, :3], mask[1:2, :3])
    torch.testing.assert_close(model.encode(ids, mask)[1:2], one)


@pytest.mark.parametrize("preset", PRESETS)
def test_decoder_is_causal(rng, preset):
    model = make(preset)
    ids, mask = batch(rng, lengths=(6, 6))
    vectors = torch.randn(2, 32, generator=rng)
    before = model.decode_logits(vectors, ids, mask)
    changed = ids.clone()
    changed[:, 4] = (changed[:, 4] + 1 - 3) % (V - 3) + 3
    after = model.decode_logits(vectors, changed, mask)
    torch.testing.assert_close(after[:, :5], before[:, :5])  # position i sees tokens < i only
    assert not torch.allclose(after[:, 5:], before[:, 5:])


@pytest.mark.parametrize("preset", PRESETS)
def test_decoder_sees_only_the_vector(rng, preset):
    """Two different sentences given the same vector decode identically (teacher-forced on the same
    targets), and the vector of another sentence changes the logits."""
    model = make(preset)
    ids, mask = batch(rng, lengths=(5, 5))
    vectors = model.encode(ids, mask)
    swapped = model.decode_logits(vectors.flip(0), ids, mask)  # row 0 gets row 1's vector
    same_vector = model.decode_logits(vectors[1:2].expand(2, -1), ids, mask)
    torch.testing.assert_close(swapped[0], same_vector[0])
    assert not torch.allclose(swapped[0], model.decode_logits(vectors, ids, mask)[0])


def test_encoder_states_reach_the_decoder_only_through_the_vector(rng):
    model = make("modern")
    ids, mask = batch(rng, lengths=(5, 4))
    vectors = model.encode(ids, mask).detach().requires_grad_(True)
    loss = model.decode_loss(vectors, ids, mask).loss
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # nothing else connects them
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0


def test_gradient_flows_from_decoder_loss_into_encoder(rng):
    model = make("official")
    model.train()
    ids, mask = batch(rng)
    model(ids, mask).loss.backward()
    assert model.encoder.layers[0].self_attn.qkv.weight.grad.abs().sum() > 0


def test_token_logprobs_match_logits_and_zero_at_padding(rng):
    model = make("modern")
    ids, mask = batch(rng)
    out = model(ids, mask)
    logp = torch.log_softmax(out.logits, -1)
    assert out.token_logprobs[1, 3].item() == pytest.approx(logp[1, 3, 2].item(), abs=1e-5)  # eos after 3 tokens
    assert out.token_logprobs[1, 1].item() == pytest.approx(logp[1, 1, ids[1, 1]].item(), abs=1e-5)
    assert (out.token_logprobs[~out.target_mask] == 0).all()


def test_focal_equals_ce_when_gamma_is_zero(rng):
    logp = torch.log_softmax(torch.randn(3, 5, 7, generator=rng), -1)[..., 0]
    mask = torch.rand(3, 5, generator=rng) > 0.3
    torch.testing.assert_close(focal_loss(logp, mask, gamma=0.0), cross_entropy_loss(logp, mask))


def test_focal_loss_value_and_stable_gradient_at_certainty():
    logp = torch.tensor([[0.0, -0.5, -1e-9]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    loss = focal_loss(logp, mask, gamma=2.0, reduction="sum")
    p = torch.tensor(-0.5).exp()
    assert loss.item() == pytest.approx(((1 - p) ** 2 * 0.5).item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logp.grad).all()


def test_ce_config_loss_is_mean_negative_logprob(rng):
    torch.manual_seed(0)
    model = SentenceVAE(modern(loss="ce")).eval()
    ids, mask = batch(rng)
    out = model(ids, mask)
    expected = -out.token_logprobs[out.target_mask].mean()
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize(
    "make_inputs, error, match",
    [
        (lambda: (torch.zeros(4, dtype=torch.long) + 3, torch.ones(4, dtype=torch.bool)), ValueError, "2-D"),
        (lambda: (torch.full((1, 3), V), torch.ones(1, 3, dtype=torch.bool)), ValueError, "outside the vocabulary"),
        (lambda: (torch.full((1, 3), -1), torch.ones(1, 3, dtype=torch.bool)), ValueError, "outside the vocabulary"),
        (lambda: (torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.bool)), ValueError, "empty batch"),
        (lambda: (torch.full((2, 3), 5), torch.tensor([[1, 1, 0], [0, 0, 0]])), ValueError, "all padding"),
        (lambda: (torch.full((1, 3), 5), torch.tensor([[0, 1, 1]])), ValueError, "right-padded"),
        (lambda: (torch.full((1, 3), 5.0), torch.ones(1, 3, dtype=torch.bool)), TypeError, "integer"),
        (lambda: (torch.full((1, 3), 5), torch.ones(1, 4, dtype=torch.bool)), ValueError, "must match"),
        (lambda: ([[5, 6]], torch.ones(1, 2, dtype=torch.bool)), TypeError, "torch.Tensor"),
    ],
)
def test_bad_token_inputs(make_inputs, error, match):
    model = make("modern")
    ids, mask = make_inputs()
    with pytest.raises(error, match=match):
        model.encode(ids, mask)


def test_official_preset_rejects_segments_longer_than_its_position_table(rng):
    model = make("official")  # max_tokens 16: 15 tokens + bos
    ok = torch.full((1, 15), 5)
    model.encode(ok, torch.ones(1, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="sinusoidal table allows at most 15"):
        model.encode(torch.full((1, 16), 5), torch.ones(1, 16, dtype=torch.bool))
    # extra padding columns past the table are fine
    wide_mask = torch.zeros(1, 20, dtype=torch.bool)
    wide_mask[0, :15] = True
    torch.testing.assert_close(model.encode(torch.full((1, 20), 5), wide_mask), model.encode(ok, wide_mask[:, :15]))


def test_modern_preset_has_no_length_limit():
    model = make("modern")  # max_tokens 64 is only the generation default
    assert model.encode(torch.full((1, 100), 5), torch.ones(1, 100, dtype=torch.bool)).shape == (1, 32)


def test_bad_sentence_vectors(rng):
    model = make("modern")
    ids, mask = batch(rng)
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        model.decode_logits(torch.randn(3, 31), ids, mask)
    with pytest.raises(ValueError, match="3 rows"):
        model.decode_logits(torch.randn(2, 32), ids, mask)
    with pytest.raises(TypeError, match="floating point"):
        model.generate(torch.ones(2, 32, dtype=torch.long))


def test_init_embeddings_from(rng):
    model = make("modern")
    weight = torch.randn(V, 32, generator=rng)
    model.init_embeddings_from(weight)
    assert torch.equal(model.encoder.embedding.embed.weight, weight)
    assert torch.equal(model.decoder.lm_head.weight, weight)  # tied head follows
    with pytest.raises(ValueError, match="embed_dim=48"):
        model.init_embeddings_from(torch.randn(V, 48))
    with pytest.raises(ValueError, match="vocab_size"):
        model.init_embeddings_from(torch.randn(V + 1, 32))


def test_project_in_when_embed_dim_differs(rng):
    torch.manual_seed(0)
    model = SentenceVAE(official(embed_dim=16)).eval()
    model.init_embeddings_from(torch.randn(V, 16, generator=rng))
    assert model.encoder.embedding.project_in.weight.shape == (32, 16)
    ids, mask = batch(rng)
    assert model(ids, mask).logits.shape == (3, 7, V)
