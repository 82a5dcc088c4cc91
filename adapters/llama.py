"""The Llama family (Llama, Mistral, Qwen2/3, SmolLM2: ``model.model`` + ``lm_head``) as a backbone."""

from __future__ import annotations

from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl


class LlamaAdapter(BackboneAdapter):
    """Body = ``model.model`` (decoder layers + final RMSNorm, rotary positions) without embeddings.

    Tied embeddings (SmolLM2) share one tensor between ``embed_tokens`` and ``lm_head``; both are
    set to None so nothing keeps it alive.
    """

    name = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3")

    @staticmethod
    def _body(model: nn.Module) -> nn.Module:
        body = getattr(model, "model", None) if hasattr(model, "lm_head") else model
        if body is None or not hasattr(body, "layers") or not hasattr(body, "embed_tokens"):
            raise TypeError(f"expected a LlamaForCausalLM-like model, got {type(model).__name__}")
        return body

    def strip(self, model: nn.Module) -> nn.Module:
        body = self._body(model)
        body.embed_tokens = None
        if hasattr(model, "lm_head"):
            model.lm_head = None
        return body


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [LlamaAdapter]
