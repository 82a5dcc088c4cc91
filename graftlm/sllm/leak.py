"""The authors' leak, reproducible on purpose: a SentenceLLM whose body attends *both ways*.

The official SentenceLLM calls the backbone's decoder layers without an attention mask; with the
eager attention of 2024 that is bidirectional, so sentence position t sees sentence t+1 — the one
its hidden state is trained to decode. ``attention="bidirectional"`` reproduces that for research
(measuring how much the paper's perplexities owe to it); it is never a default and always warns.
Padding slots stay masked as keys, so a row's result does not depend on what it is batched with
(the authors' code also let real positions attend to padding slots; see docs/official.md).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

ATTENTION_MODES = ("causal", "bidirectional")


class LeakyAttentionWarning(UserWarning):
    """A SentenceLLM runs with bidirectional attention: its PPL is not a language model's."""


def check_attention(mode: Any) -> str:
    """Validate an ``attention`` option; warn when it is the leaky one."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {mode!r}")
    if mode == "bidirectional":
        warnings.warn(
            "attention='bidirectional': every sentence position attends to LATER sentences, including the one "
            "it is trained to decode (the authors' unmasked SentenceLLM). For research on that leak only: "
            "perplexities measured this way are not language-model perplexities.",
            LeakyAttentionWarning,
            stacklevel=3,
        )
    return mode


def set_attention(sllm: Any, mode: str) -> None:
    """Switch an existing SentenceLLM between ``"causal"`` and ``"bidirectional"`` (e.g. to
    evaluate a model trained one way the other way). Warns for the leaky mode."""
    sllm.graft_options["attention"] = check_attention(mode)
    apply_attention(sllm)


def apply_attention(sllm: Any) -> None:
    """Give ``sllm`` the adapter its ``graft_options["attention"]`` asks for: its own for causal,
    wrapped in a `BidirectionalAdapter` for the leak (the core forward knows nothing of it)."""
    inner = sllm.adapter.inner if isinstance(sllm.adapter, BidirectionalAdapter) else sllm.adapter
    leaky = sllm.graft_options.get("attention", "causal") == "bidirectional"
    sllm.adapter = BidirectionalAdapter(inner) if leaky else inner


class BidirectionalAdapter:
    """Wraps a backbone adapter so that its body attends both ways (`bidirectional_mask`); every
    other attribute is the wrapped adapter's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if "inner" not in self.__dict__:  # while copy/pickle rebuild the object
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)

    def forward(self, body: torch.nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, past_key_values: Any = None, use_cache: bool = False) -> Any:
        mask = bidirectional_mask(attention_mask, inputs_embeds)
        return self.inner.forward(body, inputs_embeds, mask, position_ids, past_key_values, use_cache)


def bidirectional_mask(attention_mask: torch.Tensor, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """(B, P+L) padding mask → (B, 1, L, P+L) additive float mask: every query sees every real key,
    earlier or later; padding keys are blocked. A 4D mask is used as given by transformers' models
    (eager and SDPA alike), so no causal mask is added on top."""
    if attention_mask.dim() != 2:
        raise ValueError(f"expected a 2D (batch, keys) padding mask, got shape {tuple(attention_mask.shape)}")
    dtype = inputs_embeds.dtype
    keys = attention_mask.to(device=inputs_embeds.device, dtype=torch.bool)
    blocked = torch.zeros(keys.shape, dtype=dtype, device=keys.device).masked_fill(~keys, torch.finfo(dtype).min)
    return blocked[:, None, None, :].expand(-1, 1, inputs_embeds.shape[1], -1)
