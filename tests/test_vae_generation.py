"""SentenceVAE.generate: KV cache == recompute, batching, eos handling, sampling and its filters."""

from __future__ import annotations

import pytest
import torch

from graftlm.vae import SentenceVAE, SentenceVAEConfig
from graftlm.vae.generation import filter_top_k, filter_top_p

V = 40
EOS = 2


def make(preset: str) -> SentenceVAE:
    torch.manual_seed(0)
    if preset == "modern":
        config = SentenceVAEConfig(vocab_size=V, hidden_size=32, num_heads=4, num_layers=2, init_std=0.3)
    elif preset == "prefix":  # issue 19: order-preserving encoder, 3 prefix slots instead of cross-attention
        config = SentenceVAEConfig(vocab_size=V, hidden_size=32, num_heads=4, num_layers=2, init_std=0.3,
                                   encoder="positional", conditioning="prefix", memory_slots=3)
    else:
        config = SentenceVAEConfig.official(vocab_size=V, hidden_size=32, num_heads=4, num_layers=2, max_tokens=24, init_std=0.3)
    return SentenceVAE(config).eval()


def vectors(rng, n=6):
    return torch.randn(n, 32, generator=rng) * 3


@pytest.mark.parametrize("preset", ["modern", "official", "prefix"])
def test_cached_equals_uncached_greedy(rng, preset):
    model = make(preset)
    v = vectors(rng)
    cached = model.generate(v, 20, use_cache=True)
    uncached = model.generate(v, 20, use_cache=False)
    assert cached == uncached
    assert len({tuple(r) for r in cached}) > 1  # rows differ, so the check is not vacuous


@pytest.mark.parametrize("preset", ["modern", "official", "prefix"])
def test_cached_step_logits_match_full_recompute(rng, preset):
    model = make(preset)
    v = vectors(rng, 2)
    ids = torch.randint(3, V, (2, 7), generator=rng)
    ids[:, 0] = model.config.bos_token_id
    full = model.decoder(v, ids)
    cache = model.decoder.new_cache(v, capacity=7)
    steps = torch.cat([model.decoder(v, ids[:, :3], cache), model.decoder(v, ids[:, 3:4], cache),
                       model.decoder(v, ids[:, 4:], cache)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", ["modern", "official", "prefix"])
def test_batch_equals_one_by_one(rng, preset):
    model = make(preset)
    v = vectors(rng)
    together = model.generate(v, 20)
    alone = [model.generate(v[i : i + 1], 20)[0] for i in range(len(v))]
    assert together == alone


def _eos_model(rng) -> tuple[SentenceVAE, torch.Tensor]:
    """A model whose greedy rows end at different lengths: make eos likely by raising its bias in
    an untied head and pick vectors whose rows stop early and late."""
    torch.manual_seed(0)
    config = SentenceVAEConfig(vocab_size=V, hidden_size=32, num_heads=4, num_layers=1, init_std=0.3, tie_word_embeddings=False)
    model = SentenceVAE(config).eval()
    with torch.no_grad():
        model.decoder.lm_head.bias[EOS] = 1.5
    return model, vectors(rng, 16)


def test_rows_stop_at_their_own_eos(rng):
    model, v = _eos_model(rng)
    rows = model.generate(v, 12)
    lengths = {len(r) for r in rows}
    assert len(lengths) > 1 and min(lengths) < 12  # some rows stopped early, at different points
    assert all(EOS not in r for r in rows)
    for i, row in enumerate(rows):  # each row equals what it produces alone
        assert model.generate(v[i : i + 1], 12)[0] == row


def test_return_tensors_feed_back_into_encode(rng):
    model, v = _eos_model(rng)
    rows = model.generate(v, 12)
    ids, mask = model.generate(v, 12, return_tensors=True)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.shape == (16, max(len(r) for r in rows))
    assert [ids[i, : len(r)].tolist() for i, r in enumerate(rows)] == rows
    assert mask.sum(1).tolist() == [len(r) for r in rows]
    assert (ids[~mask] == model.config.pad_token_id).all()
    nonempty = mask.any(1)
    assert model.encode(ids[nonempty], mask[nonempty]).shape == (int(nonempty.sum()), 32)


def test_ignore_eos_gives_fixed_length(rng):
    model, v = _eos_model(rng)
    rows = model.generate(v, 12, ignore_eos=True)
    assert all(len(r) == 12 and EOS not in r for r in rows)


def test_sampling_is_deterministic_with_a_generator(rng):
    model = make("modern")
    v = vectors(rng)
    kwargs = dict(do_sample=True, temperature=1.5, top_k=10, top_p=0.9)
    first = model.generate(v, 15, generator=torch.Generator().manual_seed(7), **kwargs)
    second = model.generate(v, 15, generator=torch.Generator().manual_seed(7), **kwargs)
    other = model.generate(v, 15, generator=torch.Generator().manual_seed(8), **kwargs)
    assert first == second and first != other


def test_sampling_with_cache_equals_without(rng):
    model = make("modern")
    v = vectors(rng)
    a = model.generate(v, 15, do_sample=True, use_cache=True, generator=torch.Generator().manual_seed(3))
    b = model.generate(v, 15, do_sample=True, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert a == b


def test_top_k_filter_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = filter_top_k(logits, 2).isfinite()
    assert kept.tolist() == [[False, True, False, True, False]]


def test_top_p_filter_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    assert filter_top_p(logits, 0.75).isfinite().tolist() == [[False, True, True, False]]  # 0.5+0.3 ≥ 0.75
    assert filter_top_p(logits, 0.5).isfinite().tolist() == [[False, True, False, False]]
    assert filter_top_p(logits, 0.1).isfinite().tolist() == [[False, True, False, False]]  # top-1 always kept
    assert filter_top_p(logits, 1.0).isfinite().all()


def test_top_k_one_sampling_equals_greedy(rng):
    model = make("modern")
    v = vectors(rng)
    assert model.generate(v, 10, do_sample=True, top_k=1) == model.generate(v, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(do_sample=True, temperature=0.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=1.5), "top_p"),
    ],
)
def test_bad_generation_arguments(rng, kwargs, match):
    model = make("modern")
    with pytest.raises(ValueError, match=match):
        model.generate(vectors(rng, 1), **kwargs)


def test_official_generation_cap_is_its_position_table(rng):
    model = make("official")  # 24 positions
    assert len(model.generate(vectors(rng, 1), 24, ignore_eos=True)[0]) == 24
    with pytest.raises(ValueError, match="24-position sinusoidal table"):
        model.generate(vectors(rng, 1), 25)


def test_generate_rejects_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        make("modern").generate(torch.zeros(0, 32))
