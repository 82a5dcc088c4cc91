"""graftlm.attention: SDPA and xformers paths against a naive reference, masks, backend selection."""

from __future__ import annotations

import math

import pytest
import torch

import graftlm.attention as attn
from graftlm.attention import attention, attention_backend, resolved_backend, set_attention_backend

from fixtures.fake_xformers import install_fake_xformers


def naive(q, k, v, causal=False, key_padding_mask=None):
    """Reference: explicit softmax(QKᵀ/√d)V; fully masked rows → 0."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    lq, lk = q.shape[2], k.shape[2]
    allowed = torch.ones(lq, lk, dtype=torch.bool)
    if causal:
        allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
    allowed = allowed[None, None].expand(q.shape[0], 1, lq, lk)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, -1).nan_to_num(0.0)
    return weights @ v


def qkv(rng, b=2, h=3, lq=5, lk=5, d=8):
    return (torch.randn(b, h, lq, d, generator=rng), torch.randn(b, h, lk, d, generator=rng),
            torch.randn(b, h, lk, d, generator=rng))


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    set_attention_backend("auto")
    attn._xformers_verdicts.clear()


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_naive_without_mask(rng, causal):
    q, k, v = qkv(rng)
    with attention_backend("sdpa"):
        torch.testing.assert_close(attention(q, k, v, causal=causal), naive(q, k, v, causal))


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_naive_with_padding(rng, causal):
    q, k, v = qkv(rng)
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with attention_backend("sdpa"):
        out = attention(q, k, v, causal=causal, key_padding_mask=pad)
    torch.testing.assert_close(out, naive(q, k, v, causal, pad))


def test_causal_query_block_with_offset(rng):
    """Cached decoding: 2 new queries over 6 keys see keys up to their own absolute position."""
    q, k, v = qkv(rng, lq=2, lk=6)
    full_q = torch.cat([torch.randn(2, 3, 4, 8, generator=rng), q], dim=2)
    expected = naive(full_q, k, v, causal=True)[:, :, -2:]
    torch.testing.assert_close(attention(q, k, v, causal=True), expected)
    pad = torch.ones(2, 6, dtype=torch.bool)
    torch.testing.assert_close(attention(q, k, v, causal=True, key_padding_mask=pad), expected)


def test_single_query_sees_all_cached_keys(rng):
    q, k, v = qkv(rng, lq=1, lk=7)
    torch.testing.assert_close(attention(q, k, v, causal=True), naive(q, k, v, causal=False))


def test_all_masked_row_gives_zeros_not_nan(rng):
    q, k, v = qkv(rng)
    pad = torch.tensor([[False] * 5, [True] * 5])
    out = attention(q, k, v, key_padding_mask=pad)
    assert not out.isnan().any()
    assert (out[0] == 0).all()


def test_bad_shapes_and_mask_dtype(rng):
    q, k, v = qkv(rng)
    with pytest.raises(ValueError, match=r"\(B, H, L, D\)"):
        attention(q[0], k[0], v[0])
    with pytest.raises(TypeError, match="torch.bool"):
        attention(q, k, v, key_padding_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="key_padding_mask"):
        attention(q, k, v, key_padding_mask=torch.ones(2, 4, dtype=torch.bool))


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown attention backend"):
        set_attention_backend("flash")


def test_context_manager_restores_previous_backend():
    set_attention_backend("sdpa")
    with attention_backend("auto"):
        assert attn.get_attention_backend() == "auto"
    assert attn.get_attention_backend() == "sdpa"


def test_auto_uses_sdpa_on_cpu(rng):
    q, _, _ = qkv(rng)
    assert resolved_backend(q) == "sdpa"


def test_forcing_xformers_when_it_cannot_run_is_a_clear_error(rng, monkeypatch):
    monkeypatch.setattr(attn, "_xformers_ops", lambda: None)  # as if xformers did not import
    q, k, v = qkv(rng)
    with attention_backend("xformers"), pytest.raises(RuntimeError, match="xformers"):
        attention(q, k, v)


def _fake_xformers(monkeypatch, fail: bool):
    return install_fake_xformers(monkeypatch, fail=fail)


@pytest.mark.parametrize("causal", [False, True])
def test_xformers_path_with_a_stand_in_operator(rng, monkeypatch, causal):
    calls = _fake_xformers(monkeypatch, fail=False)
    q, k, v = qkv(rng)
    pad = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with attention_backend("xformers"):
        out = attention(q, k, v, causal=causal, key_padding_mask=pad)
        plain = attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, naive(q, k, v, causal, pad))
    torch.testing.assert_close(plain, naive(q, k, v, causal))
    assert len(calls) == 2


def test_auto_falls_back_after_a_failed_trial_and_caches_the_verdict(rng, monkeypatch):
    calls = _fake_xformers(monkeypatch, fail=True)
    q, k, v = qkv(rng)
    assert resolved_backend(q) == "xformers"  # untried: optimistic
    torch.testing.assert_close(attention(q, k, v), naive(q, k, v))
    torch.testing.assert_close(attention(q, k, v), naive(q, k, v))
    assert len(calls) == 1  # the second call did not retry
    assert resolved_backend(q) == "sdpa"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("causal", [False, True])
def test_real_xformers_on_cuda_matches_sdpa(causal):
    pytest.importorskip("xformers.ops")
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 64, device="cuda", dtype=torch.float16, generator=g) for _ in range(3))
    pad = torch.ones(2, 16, dtype=torch.bool, device="cuda")
    pad[1, 10:] = False
    with attention_backend("sdpa"):
        expected = attention(q, k, v, causal=causal, key_padding_mask=pad)
    with attention_backend("xformers"):
        out = attention(q, k, v, causal=causal, key_padding_mask=pad)
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)
