"""TeleChat (Tele-AI, remote code) as a backbone — optional, works when its remote code is loaded.

TeleChat ships its modelling code on the model hub (``trust_remote_code=True``); graftlm never
downloads it. When a user has loaded a TeleChat model, its ``config.model_type`` is "telechat" and
the model is ``TelechatForCausalLM``: ``transformer.word_embeddings`` → ``transformer.h`` blocks
→ ``transformer.ln_f`` and an ``lm_head``. Its rotary positions come from the sequence length and
the cache, so rows must be right-padded at the sentence level (graftlm's training batches are).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl
from graftlm.plugins.adapter import cache_keyword, cache_of


class TeleChatAdapter(BackboneAdapter):
    name = "telechat"
    model_types = ("telechat",)

    def matches(self, model: nn.Module) -> bool:
        return super().matches(model) and hasattr(getattr(model, "transformer", None), "h")

    def body(self, model: nn.Module) -> nn.Module:
        return model.transformer

    def strip(self, model: nn.Module) -> nn.Module:
        body = model.transformer
        body.word_embeddings = None
        model.lm_head = None
        return body

    def hidden_size(self, body: nn.Module) -> int:
        return int(body.config.hidden_size)

    def max_positions(self, body: nn.Module) -> int | None:
        config = body.config
        value = getattr(config, "seq_length", None) or getattr(config, "max_position_embeddings", None)
        return int(value) if value else None

    def layers(self, body: nn.Module) -> nn.ModuleList:
        return body.h

    def new_cache(self, body: nn.Module) -> Any:
        return None  # TeleChat's remote code builds its own (legacy tuple) cache

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
            use_cache=use_cache,
            return_dict=True,
            **{cache_keyword(body): past_key_values},
        )
        return out.last_hidden_state, (cache_of(out) if use_cache else None)


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [TeleChatAdapter]
