"""The generic adapter: any `transformers` causal LM whose base model reads ``inputs_embeds``.

Tried after every specific adapter. It relies only on what `PreTrainedModel` exposes everywhere:
``model.base_model`` is the body, ``get_input_embeddings()`` / ``get_output_embeddings()`` name the
modules to remove (found by identity, so tied weights and unusual attribute names need no table),
the body's width is the input embedding's, and positions go in only where the body's forward
takes them. Nothing here is verified per architecture: `graft` runs its self-test
(`graftlm.plugins.selftest`) on every model this adapter takes, and refuses one that fails.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl
from graftlm.plugins.adapter import CACHE_KEYWORDS, cache_of

WIDTH_ATTR = "_graftlm_width"  # set on the body by `strip`: its input embedding is gone afterwards


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _parameters(body: nn.Module) -> Any:
    try:
        return inspect.signature(body.forward).parameters
    except (TypeError, ValueError):
        return {}


class GenericAdapter(BackboneAdapter):
    """Body = ``model.base_model`` without the modules its input/output embedding getters return."""

    name = "generic"
    model_types: tuple[str, ...] = ()  # any: see `matches`
    fallback = True  # tried after every specific adapter

    def matches(self, model: nn.Module) -> bool:
        try:
            base = model.base_model
            embed = model.get_input_embeddings()
        except (AttributeError, NotImplementedError):
            return False
        return isinstance(base, nn.Module) and base is not model and isinstance(embed, nn.Module)

    def why_not(self, model: nn.Module) -> str:
        """Why `matches` is False, in words (for the refusal message)."""
        if not hasattr(model, "get_input_embeddings"):
            return f"{type(model).__name__} is not a transformers PreTrainedModel (no get_input_embeddings())"
        if getattr(model, "base_model", model) is model:
            return f"{type(model).__name__} has no separate base model (model.base_model is the model itself)"
        return f"{type(model).__name__}.get_input_embeddings() returns no module"

    def body(self, model: nn.Module) -> nn.Module:
        return model.base_model

    def strip(self, model: nn.Module) -> nn.Module:
        body = model.base_model
        embed = model.get_input_embeddings()
        head = model.get_output_embeddings()
        width = int(embed.weight.shape[-1])
        targets = {id(embed)} | ({id(head)} if isinstance(head, nn.Module) else set())
        for parent in list(model.modules()):
            for name, child in list(parent._modules.items()):
                if child is not None and id(child) in targets:
                    setattr(parent, name, None)
        setattr(body, WIDTH_ATTR, width)
        return body

    def hidden_size(self, body: nn.Module) -> int:
        width = getattr(body, WIDTH_ATTR, None)
        if width is not None:
            return int(width)
        embed = body.get_input_embeddings() if hasattr(body, "get_input_embeddings") else None
        if isinstance(embed, nn.Module) and getattr(embed, "weight", None) is not None:
            return int(embed.weight.shape[-1])
        return int(_text_config(body.config).hidden_size)

    def max_positions(self, body: nn.Module) -> int | None:
        value = getattr(_text_config(body.config), "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def layers(self, body: nn.Module) -> nn.ModuleList:
        count = getattr(_text_config(body.config), "num_hidden_layers", None)
        for _, module in body.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == count:
                return module
        raise TypeError(f"{type(body).__name__} holds no ModuleList of config.num_hidden_layers={count} blocks")

    def new_cache(self, body: nn.Module) -> Any:
        return None  # the body builds the cache class it needs (KV, convolution or recurrent state) itself

    def forward(
        self,
        body: nn.Module,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any | None]:
        params = _parameters(body)
        kwargs: dict[str, Any] = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if "position_ids" in params:
            kwargs["position_ids"] = position_ids
        keyword = next((k for k in CACHE_KEYWORDS if k in params), None)
        if keyword is None:
            if use_cache or past_key_values is not None:
                raise TypeError(f"{type(body).__name__}.forward takes neither `cache` nor `past_key_values`: "
                                "it keeps no KV cache graftlm can thread through generation")
        else:
            kwargs[keyword] = past_key_values
            kwargs["use_cache"] = use_cache
        if "return_dict" in params:
            kwargs["return_dict"] = True
        out = body(**kwargs)
        return out.last_hidden_state, (cache_of(out) if use_cache else None)


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [GenericAdapter]
