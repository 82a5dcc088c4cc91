"""The Llama family (Llama, Mistral, Qwen2/3, SmolLM2) under the name ``llama``.

Almost no code of its own: the generic adapter does the work. It stays registered because saved
SentenceLLMs name their adapter (``"adapter": "llama"`` in sllm_config.json) and because the test
suite verifies these four architectures (causality, padding on either side, cached steps), so
`graft` skips its self-test for them.
"""

from __future__ import annotations

from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl
from graftlm_adapters.generic import GenericAdapter


class LlamaAdapter(GenericAdapter):
    """Body = ``model.model`` (decoder layers + final RMSNorm, rotary positions) without embeddings;
    a tied ``lm_head`` goes with ``embed_tokens`` so nothing keeps their shared tensor alive."""

    name = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    verified_model_types = model_types
    fallback = False

    def matches(self, model: nn.Module) -> bool:
        return BackboneAdapter.matches(self, model)

    # transformers' DynamicCache from the start: older releases (4.46) return a legacy tuple cache,
    # deprecated there, when the body builds the cache itself
    new_cache = BackboneAdapter.new_cache


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [LlamaAdapter]
