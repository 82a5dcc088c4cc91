"""The Llama family (Llama, Mistral, Qwen2/3, SmolLM2: ``model.model`` + ``lm_head``) as a backbone."""

from __future__ import annotations

from typing import Any

import torch
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

    def hidden_size(self, body: nn.Module) -> int:
        return int(body.config.hidden_size)

    def max_positions(self, body: nn.Module) -> int | None:
        return int(body.config.max_position_embeddings)

    def layers(self, body: nn.Module) -> nn.ModuleList:
        return body.layers

    def forward(
        self,
        body: nn.Module,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any | None]:
        out = body(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        return out.last_hidden_state, (out.past_key_values if use_cache else None)


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [LlamaAdapter]
