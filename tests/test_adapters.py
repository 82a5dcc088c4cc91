"""Built-in adapters: stripping really frees the embedding/LM head; the body runs causally on
inputs_embeds with per-row positions, padding on either side, and a KV cache. TeleChat is built
from Tele-AI's own modelling code (tests/fixtures/telechat/, unmodified, Apache-2.0)."""

from __future__ import annotations

import gc
import hashlib
import weakref
from pathlib import Path

import pytest
import torch

from graftlm.plugins import find_adapter

from fixtures.telechat import tiny_telechat
from fixtures.tiny_models import one_thread, tiny_llama, tiny_opt  # noqa: F401

BUILDERS = {
    "opt": lambda: tiny_opt(),
    "opt-350m-style": lambda: tiny_opt(hidden=32, proj=16),
    "llama-tied": lambda: tiny_llama(tied=True),
    "llama-untied": lambda: tiny_llama(tied=False),
    "telechat": lambda: tiny_telechat(vocab=259, hidden=32),
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _stripped(name):
    model = BUILDERS[name]()
    adapter = find_adapter(model)
    return model, adapter, adapter.strip(model)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(1) - 1).clamp_min(0)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_strip_removes_embedding_and_head(name):
    model = BUILDERS[name]()
    embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight
    head_size = 0 if head is model.get_input_embeddings().weight else head.numel()
    total = _count(model)
    adapter = find_adapter(model)
    body = adapter.strip(model)
    assert _count(body) == total - embed - head_size
    assert model.lm_head is None and model.get_input_embeddings() is None
    assert not any(part in n for n, _ in model.named_parameters() for part in ("embed_tokens", "word_embeddings", "lm_head"))


def test_tied_embedding_tensor_is_freed():
    model = tiny_llama(tied=True)
    ref = weakref.ref(model.model.embed_tokens.weight)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    body = find_adapter(model).strip(model)
    del model
    gc.collect()
    assert ref() is None
    assert body.embed_tokens is None


@pytest.mark.parametrize("name", list(BUILDERS))
def test_padding_on_either_side_matches_unpadded(name):
    _, adapter, body = _stripped(name)
    d = adapter.hidden_size(body)
    x = torch.randn(1, 3, d, generator=torch.Generator().manual_seed(0))
    alone, _ = adapter.forward(body, x, torch.ones(1, 3, dtype=torch.bool), _positions(torch.ones(1, 3, dtype=torch.bool)))
    pad = torch.zeros(1, 2, d)
    for padded, mask, sl in (
        (torch.cat([x, pad], 1), torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool), slice(0, 3)),
        (torch.cat([pad, x], 1), torch.tensor([[0, 0, 1, 1, 1]], dtype=torch.bool), slice(2, 5)),
    ):
        hidden, _ = adapter.forward(body, padded, mask, _positions(mask))
        assert torch.allclose(hidden[:, sl], alone, atol=1e-5)
        assert not hidden.isnan().any()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_kv_cache_steps_match_full_forward(name):
    _, adapter, body = _stripped(name)
    d = adapter.hidden_size(body)
    x = torch.randn(2, 6, d, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    pos = _positions(mask)
    full, _ = adapter.forward(body, x, mask, pos)
    hidden, cache = adapter.forward(body, x[:, :3], mask[:, :3], pos[:, :3], adapter.new_cache(body), True)
    steps = [hidden]
    for t in range(3, 6):
        h, cache = adapter.forward(body, x[:, t : t + 1], mask[:, : t + 1], pos[:, t : t + 1], cache, True)
        steps.append(h)
    assert torch.allclose(torch.cat(steps, 1)[mask], full[mask], atol=1e-5)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_body_is_causal(name):
    _, adapter, body = _stripped(name)
    d = adapter.hidden_size(body)
    x = torch.randn(1, 5, d, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(1, 5, dtype=torch.bool)
    before, _ = adapter.forward(body, x, mask, _positions(mask))
    x2 = x.clone()
    x2[:, 3] += torch.randn(d, generator=torch.Generator().manual_seed(3))  # not a constant shift: LayerNorm ignores those
    after, _ = adapter.forward(body, x2, mask, _positions(mask))
    assert torch.equal(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


def test_opt_350m_style_body_width_is_word_embed_proj_dim():
    _, adapter, body = _stripped("opt-350m-style")
    assert adapter.hidden_size(body) == 16 and body.config.hidden_size == 32
    hidden, _ = adapter.forward(body, torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool), torch.arange(2)[None])
    assert hidden.shape == (1, 2, 16)


def test_generic_adapter_body_width_is_the_input_embeddings():
    from graftlm_adapters.generic import GenericAdapter

    model = tiny_opt(hidden=32, proj=16)  # OPT-350M-style: project_in/out around a wider decoder
    adapter = GenericAdapter()
    body = adapter.strip(model)
    assert adapter.hidden_size(body) == 16 and len(adapter.layers(body)) == 2
    hidden, _ = adapter.forward(body, torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool), torch.arange(2)[None])
    assert hidden.shape == (1, 2, 16)


def test_generic_strip_frees_a_tied_embedding():
    from fixtures.tiny_models import tiny_gpt2
    from graftlm_adapters.generic import GenericAdapter

    model = tiny_gpt2()
    ref = weakref.ref(model.transformer.wte.weight)
    assert model.lm_head.weight is model.transformer.wte.weight
    body = GenericAdapter().strip(model)
    assert model.lm_head is None and body.wte is None
    del model
    gc.collect()
    assert ref() is None


def test_telechat_is_taken_by_the_generic_adapter():
    model = tiny_telechat()
    assert type(model).__name__ == "TelechatForCausalLM" and model.config.model_type == "telechat"
    assert find_adapter(model).name == "generic"


def test_telechat_fixture_is_tele_ais_file_unmodified():
    """PROVENANCE.md records the upstream sha256 of each copied file; an edit here breaks the claim."""
    folder = Path(__file__).parent / "fixtures" / "telechat"
    provenance = (folder / "PROVENANCE.md").read_text()
    for name in ("modeling_telechat.py", "configuration_telechat.py"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in provenance
