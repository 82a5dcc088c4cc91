"""The backbone KV cache across transformers versions: adapters pass it under the keyword the
installed release takes (``cache`` in 5.x, ``past_key_values`` before), the cache is really used
(it grows by one position per step and a cached step equals a full recompute), and graftlm's own
calls trigger no deprecation warning (transformers reports them as FutureWarning, or through its
logger). CI runs this file a second time on the oldest transformers pyproject.toml admits."""

from __future__ import annotations

import inspect
import logging
import warnings

import pytest
import torch

from graftlm.plugins import find_adapter
from graftlm.plugins.adapter import cache_keyword

from fixtures.tiny_models import BACKBONES, TEXTS, one_thread, paragraphs_batch, tiny_vae  # noqa: F401


def _cache_length(cache) -> int:
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    return int(cache[0][0].shape[-2])  # legacy tuple cache: (layers)(key, value) (B, heads, T, d)


def _body(name: str):
    model = BACKBONES[name]()
    adapter = find_adapter(model)
    return adapter, adapter.strip(model)


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _deprecations(fn) -> list[str]:
    """Run ``fn``; return every warning (any category) and transformers log line saying "deprecat"."""
    handler = _Messages()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        logger.removeHandler(handler)
    found = [f"{w.category.__name__}: {w.message}" for w in caught] + handler.messages
    return [m for m in found if "deprecat" in m.lower()]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_cache_keyword_is_the_one_the_installed_transformers_names(name):
    _, body = _body(name)
    params = inspect.signature(body.forward).parameters
    expected = "cache" if "cache" in params else "past_key_values"
    assert cache_keyword(body) == expected


def test_a_forward_without_a_cache_keyword_is_an_error_not_a_silent_uncached_run():
    class Body(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask=None, **kwargs):
            return inputs_embeds

    with pytest.raises(TypeError, match="neither `cache` nor `past_key_values`"):
        cache_keyword(Body())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_cache_grows_and_a_cached_step_equals_full_recompute(name):
    adapter, body = _body(name)
    torch.manual_seed(0)
    x = torch.randn(2, 5, adapter.hidden_size(body))
    mask = torch.ones(2, 5, dtype=torch.bool)
    pos = torch.arange(5).expand(2, 5)
    with torch.no_grad():
        full, _ = adapter.forward(body, x, mask, pos)
        hidden, cache = adapter.forward(body, x[:, :3], mask[:, :3], pos[:, :3], adapter.new_cache(body), True)
        assert _cache_length(cache) == 3
        for t in (3, 4):
            step, cache = adapter.forward(body, x[:, t : t + 1], mask[:, : t + 1], pos[:, t : t + 1], cache, True)
            assert _cache_length(cache) == t + 1
            torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hidden, full[:, :3], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_a_step_without_the_cache_differs_so_the_cache_is_really_read(name):
    adapter, body = _body(name)
    torch.manual_seed(0)
    x = torch.randn(1, 4, adapter.hidden_size(body))
    mask = torch.ones(1, 4, dtype=torch.bool)
    pos = torch.arange(4)[None]
    with torch.no_grad():
        full, _ = adapter.forward(body, x, mask, pos)
        alone, _ = adapter.forward(body, x[:, 3:], mask[:, 3:], pos[:, 3:])
    assert not torch.allclose(alone[:, 0], full[:, 3], atol=1e-4)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_graftlm_backbone_calls_trigger_no_deprecation_warning(name):
    adapter, body = _body(name)
    x = torch.randn(1, 3, adapter.hidden_size(body))
    mask = torch.ones(1, 3, dtype=torch.bool)
    pos = torch.arange(3)[None]

    def run():
        with torch.no_grad():
            _, cache = adapter.forward(body, x[:, :2], mask[:, :2], pos[:, :2], adapter.new_cache(body), True)
            adapter.forward(body, x[:, 2:], mask, pos[:, 2:], cache, True)

    assert _deprecations(run) == []


def test_sentence_generation_triggers_no_deprecation_warning():
    from graftlm.sllm import graft
    from graftlm.tokenization import ByteTokenizer

    sllm = graft(BACKBONES["llama"](), tiny_vae(), tokenizer=ByteTokenizer(), own_vocab=True)
    batch = paragraphs_batch(TEXTS[:2])

    def run():
        sllm.generate(batch, max_new_sentences=2, max_tokens_per_sentence=4, ignore_stop=True, return_dict=True)

    assert _deprecations(run) == []
