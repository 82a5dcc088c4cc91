"""The backbone adapter interface: what graftlm needs to know to graft onto a decoder-only LLM."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache


class BackboneAdapter(ABC):
    """Strips a causal LM down to its decoder body and runs that body on sentence vectors.

    Subclasses set ``name`` and ``model_types`` (the ``config.model_type`` values they handle) and
    implement `strip`. The other methods have defaults that fit most `transformers` decoders
    (``config.hidden_size``, ``config.max_position_embeddings``, ``body.layers`` and a call with
    ``inputs_embeds``/``attention_mask``/``position_ids`` and the KV cache under the keyword the
    installed transformers names in the body's signature, see `cache_keyword`); override the ones
    your backbone names differently. Adapters are stateless: every method gets the model or body
    it works on.
    """

    name: str = ""
    model_types: tuple[str, ...] = ()
    # model types whose causality, padding and cache behaviour this adapter's own tests verify:
    # graft skips its self-test (`graftlm.plugins.selftest`) for them and runs it for everything else
    verified_model_types: tuple[str, ...] = ()
    fallback: bool = False  # True: tried only after every specific adapter (the generic one)

    def matches(self, model: nn.Module) -> bool:
        """True when this adapter can graft ``model`` (default: its ``config.model_type``)."""
        config = getattr(model, "config", None)
        return getattr(config, "model_type", None) in self.model_types

    def verifies(self, model: nn.Module) -> bool:
        """True when ``model``'s architecture is one this adapter declares verified."""
        config = getattr(model, "config", None)
        return getattr(config, "model_type", None) in self.verified_model_types

    def body(self, model: nn.Module) -> nn.Module:
        """The body `strip` would return, without modifying anything (graft probes it first).
        Default: ``model.base_model``; override when `strip` returns something else."""
        base = getattr(model, "base_model", None)
        if not isinstance(base, nn.Module):
            raise TypeError(f"{type(model).__name__} has no base_model; {type(self).__name__} must override body()")
        return base

    @abstractmethod
    def strip(self, model: nn.Module) -> nn.Module:
        """Remove the token embedding and LM head from ``model`` and return the decoder body.

        The removed modules must really go (set to None on ``model`` too), so that their memory is
        freed once the caller drops ``model``; tied weights must leave no reference behind.
        """

    def hidden_size(self, body: nn.Module) -> int:
        """Width d of the vectors `forward` takes as ``inputs_embeds`` and returns."""
        return int(body.config.hidden_size)

    def max_positions(self, body: nn.Module) -> int | None:
        """Most positions (sentences) the body can attend over, or None if unbounded."""
        value = getattr(body.config, "max_position_embeddings", None)
        return int(value) if value else None

    def layers(self, body: nn.Module) -> nn.ModuleList:
        """The body's decoder blocks, in order (used to keep the first/last k trainable)."""
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
        """Run the body causally.

        ``inputs_embeds`` (B, L, d) float; ``attention_mask`` (B, P + L) bool/long padding mask over
        the cached positions P and the new ones (True = real); ``position_ids`` (B, L) long, each
        row's own positions. Returns hidden states (B, L, d) after the final norm (and any output
        projection) and the updated cache (None unless ``use_cache``). Causality must come from the
        backbone's own attention (pass the 2D mask, never a full 4D one).
        """
        out = body(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{cache_keyword(body): past_key_values},
        )
        return out.last_hidden_state, (cache_of(out) if use_cache else None)

    def new_cache(self, body: nn.Module) -> Any:
        """An empty KV cache of the backbone's own class (default: transformers' DynamicCache)."""
        if getattr(body, "_supports_cache_class", True) is False:
            return None  # older transformers (OPT before ~4.50): the body builds its legacy tuple cache itself
        if "config" in inspect.signature(DynamicCache.__init__).parameters:  # transformers >= 4.56
            return DynamicCache(config=getattr(body, "config", None))
        return DynamicCache()

    def config(self, body: nn.Module) -> Any:
        """The backbone's `transformers` config (used to save and rebuild it)."""
        return body.config

    def source(self) -> str:
        """Where the adapter comes from, for `graftlm adapters` (set by the plugin manager)."""
        return getattr(self, "_graftlm_source", type(self).__module__)


CACHE_KEYWORDS = ("cache", "past_key_values")  # newest transformers first


def cache_keyword(module: nn.Module) -> str:
    """The keyword ``module.forward`` takes its KV cache under: ``cache`` (transformers >= 5.x,
    where ``past_key_values`` is deprecated) or ``past_key_values`` (older releases).

    Read from the signature, never guessed: a deprecated name might one day be swallowed by
    ``**kwargs`` and generation would silently run without its cache, so a forward that names
    neither is an error.
    """
    forward = getattr(module, "forward", None)
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError) as err:
        raise TypeError(f"cannot read the signature of {type(module).__name__}.forward to pass its KV cache") from err
    for name in CACHE_KEYWORDS:
        if name in params:
            return name
    raise TypeError(
        f"{type(module).__name__}.forward takes neither `cache` nor `past_key_values`; write a BackboneAdapter "
        "whose forward passes the KV cache under the name this backbone uses"
    )


def cache_of(output: Any) -> Any:
    """The updated KV cache in a transformers model output (``cache`` or ``past_key_values``)."""
    for name in CACHE_KEYWORDS:
        try:
            value = output[name] if name in output else None
        except TypeError:  # not a mapping (a plain tuple or object)
            value = None
        if value is not None:
            return value
    for name in CACHE_KEYWORDS:
        value = getattr(output, name, None)
        if value is not None:
            return value
    return None


def mark_grafted(model: nn.Module) -> None:
    """Flag ``model`` so that grafting it a second time fails clearly."""
    model._graftlm_grafted = True  # type: ignore[attr-defined]


def is_grafted(model: nn.Module) -> bool:
    return bool(getattr(model, "_graftlm_grafted", False))
