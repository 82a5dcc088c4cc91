"""Mamba as a graftlm backbone: the generic adapter, with the padding mask cut to the new positions.

Why the generic adapter is not enough: transformers' Mamba applies ``attention_mask`` to the
hidden states of the positions it is computing (it zeroes padding before the convolution and the
scan) and keeps no per-position mask for the past, which lives in its recurrent state. Given the
(B, past + new) mask graftlm passes to attention models, a cached step masks the wrong positions
and its state drifts from the full forward's (the self-test's cached-step probe catches this);
given the new positions' columns only, cached steps equal the full forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graftlm.plugins import BackboneAdapter, hookimpl
from graftlm_adapters.generic import GenericAdapter


class MambaAdapter(GenericAdapter):
    name = "mamba"
    model_types = ("mamba",)
    fallback = False

    def matches(self, model: nn.Module) -> bool:
        return BackboneAdapter.matches(self, model)

    def forward(
        self,
        body: nn.Module,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any | None]:
        new = attention_mask[:, -inputs_embeds.shape[1]:]  # the past is in the recurrent state
        return super().forward(body, inputs_embeds, new, position_ids, past_key_values, use_cache)


@hookimpl
def graftlm_adapters() -> list[type[BackboneAdapter]]:
    return [MambaAdapter]
