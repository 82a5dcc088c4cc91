"""Multiply-accumulate counts per output token: backbone vs grafted SentenceLLM.

The model (documented in docs/benchmarks.md):

* backbone, per generated token at context ``c``::

      layers * (attn_proj + mlp + 2 * d * c) + lm_head

  with ``attn_proj = d*(d + 2*kv_dim) + d*d`` (Q, K, V, O), ``mlp = 2*d*ffn`` (OPT) or
  ``3*d*ffn`` (gated, Llama), ``lm_head = d_embed*V`` (+ the ``d -> d_embed`` projection when
  the embedding is narrower, OPT-350M).

* SentenceLLM, per output token, sentences of ``L`` tokens::

      (backbone_step + encoder(L) + termination) / L  +  decoder_token

  (``/ L`` is ``/ (n / ceil(n / L))`` for a fixed output of ``n`` tokens: the last sentence is cut.)

  ``backbone_step`` = the backbone's layers at sentence context ``c_s`` (no LM head; plus the
  body's project_in/out and graftlm's proj_in/out when widths differ, OPT-350M);
  ``encoder(L)`` = ``L' * H * (4h^2 + 2*h*ffn + 2*h*L')`` with ``L' = L + 1`` when the encoder
  input starts with bos (official preset) (+ ``project_in``); ``termination`` =
  ``2*d``; ``decoder_token`` = ``H * (4h^2 + 2*h*t + 2h^2 + 2h + 2*h*ffn) + head`` (self-attention
  over ``t`` ≈ (L+1)/2 tokens, cross-attention Q/O projections and one memory key) plus the
  cross-attention K/V projections ``H*2h^2`` once per sentence (so ``/ L``), and the decoder's
  vocabulary head ``h*V`` (+ projection if ``embed_dim != h``).
  Issue 19's options: the positional encoder is ``L*h*p + T*p*h`` (``p`` = positional_dim, ``T`` =
  max_tokens); prefix conditioning replaces cross-attention by ``m`` slots (expansion ``m*h^2`` and
  ``m`` decoder positions once per sentence, ``m`` more keys per step).

Embedding look-ups, norms, biases, softmax and positions are ignored (O(d) per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackboneShape:
    """What the MAC count needs from a decoder-only config."""

    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    embed_dim: int
    gated_mlp: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_config(cls, config: Any) -> "BackboneShape":
        """From an HF config (OPT, Llama and look-alikes)."""
        d = int(config.hidden_size)
        heads = int(config.num_attention_heads)
        ffn = getattr(config, "ffn_dim", None) or getattr(config, "intermediate_size", None)
        if ffn is None:
            raise ValueError(f"{type(config).__name__} has neither ffn_dim nor intermediate_size")
        gated = getattr(config, "model_type", "") not in ("opt", "gpt2")
        return cls(hidden=d, layers=int(config.num_hidden_layers), ffn=int(ffn), heads=heads,
                   kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                   vocab=int(config.vocab_size),
                   embed_dim=int(getattr(config, "word_embed_proj_dim", None) or d), gated_mlp=gated)

    def layer_macs(self, context: float) -> float:
        """MACs of all layers for one new position attending to ``context`` positions."""
        d, kv = self.hidden, self.kv_heads * self.head_dim
        proj = d * (d + 2 * kv) + d * d
        mlp = (3 if self.gated_mlp else 2) * d * self.ffn
        return self.layers * (proj + mlp + 2 * d * context)

    def head_macs(self) -> float:
        """LM head (+ the projection out of the layers' width when the embedding is narrower)."""
        proj = self.hidden * self.embed_dim if self.embed_dim != self.hidden else 0
        return self.embed_dim * self.vocab + proj

    def token_macs(self, context: float) -> float:
        return self.layer_macs(context) + self.head_macs()


@dataclass(frozen=True)
class VAEShape:
    """What the MAC count needs from a SentenceVAE config."""

    hidden: int
    layers: int
    ffn: int
    vocab: int
    embed_dim: int
    encoder_bos: bool = False
    encoder: str = "transformer"  # or "positional" (issue 19: no encoder blocks, one flattened linear layer)
    positional_dim: int = 64
    max_tokens: int = 64
    conditioning: str = "cross"  # or "prefix": memory_slots decoder positions instead of cross-attention
    memory_slots: int = 1
    gated_ffn: bool = False  # decoder_style="llama": SwiGLU (3·h·ffn)

    @classmethod
    def from_config(cls, config: Any) -> "VAEShape":
        h = int(config.hidden_size)
        ffn = getattr(config, "ffn_size", None) or 2 * h
        emb = getattr(config, "embed_dim", None) or h
        return cls(hidden=h, layers=int(config.num_layers), ffn=int(ffn), vocab=int(config.vocab_size),
                   embed_dim=int(emb), encoder_bos=bool(getattr(config, "encoder_bos", False)),
                   encoder=str(getattr(config, "encoder", "transformer")),
                   positional_dim=int(getattr(config, "positional_dim", 64)),
                   max_tokens=int(getattr(config, "max_tokens", 64)),
                   conditioning=str(getattr(config, "conditioning", "cross")),
                   memory_slots=int(getattr(config, "memory_slots", 1)),
                   gated_ffn=getattr(config, "decoder_style", "standard") == "llama")

    def encoder_macs(self, length: int) -> float:
        """The whole encoder over one sentence of ``length`` tokens (bidirectional attention;
        one more position when the config puts bos in front of the encoder input). Positional
        encoder: each real token projected to ``positional_dim``, then one linear layer over all
        ``max_tokens`` flattened positions (padding is zero but still multiplied)."""
        length = length + int(self.encoder_bos)
        h = self.hidden
        proj_in = self.embed_dim * h if self.embed_dim != h else 0
        if self.encoder == "positional":
            return length * (proj_in + h * self.positional_dim) + self.max_tokens * self.positional_dim * h
        per_tok = self.layers * (4 * h * h + 2 * h * self.ffn + 2 * h * length) + proj_in
        return length * per_tok

    def _decoder_layer(self, keys: float) -> float:
        """One decoder block for one position attending to ``keys`` keys (cross-attention's Q/O
        projections and its single memory key included under cross conditioning)."""
        h = self.hidden
        ffn = (3 if self.gated_ffn else 2) * h * self.ffn
        cross = 2 * h * h + 2 * h if self.conditioning == "cross" else 0
        return 4 * h * h + 2 * h * keys + cross + ffn

    def decoder_token_macs(self, self_context: float) -> float:
        """One decoder step (everything but the once-per-sentence part, `sentence_setup_macs`);
        under prefix conditioning the step also attends to the ``memory_slots`` slots."""
        h = self.hidden
        proj_in = self.embed_dim * h if self.embed_dim != h else 0
        head = self.embed_dim * self.vocab + (h * self.embed_dim if self.embed_dim != h else 0)
        slots = self.memory_slots if self.conditioning == "prefix" else 0
        return self.layers * self._decoder_layer(self_context + slots) + head + proj_in

    def sentence_setup_macs(self) -> float:
        """Once per sentence: cross-attention K and V of the one memory vector (all layers), or
        under prefix conditioning the expansion to ``memory_slots`` positions and their pass
        through every decoder layer (causal among themselves, no head)."""
        h, m = self.hidden, self.memory_slots
        if self.conditioning == "prefix":
            return h * m * h + m * self.layers * self._decoder_layer((m + 1) / 2)
        return self.layers * 2 * h * h


@dataclass(frozen=True)
class MacBound:
    """MACs per output token of both sides and their ratio (the CPU speed-up limit)."""

    backbone_per_token: float
    sllm_per_token: float
    sllm_parts: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.backbone_per_token / self.sllm_per_token


def mac_bound(backbone_config: Any, vae_config: Any, sentence_len: int, *, prompt_tokens: int = 0,
              new_tokens: int = 256) -> MacBound:
    """Backbone vs SentenceLLM MACs per output token for ``new_tokens`` tokens after a prompt.

    Contexts are averaged over the generation: the backbone attends to ``prompt_tokens +
    new_tokens/2`` tokens, the SentenceLLM's backbone to as many sentences, the decoder's
    self-attention to ``(L+1)/2`` tokens. A fixed output of ``new_tokens`` takes
    ``ceil(new_tokens / L)`` sentences (the last one cut), so per-sentence costs are spread over
    ``new_tokens / ceil(new_tokens / L)`` tokens, not ``L``: 64 tokens in sentences of 9 are 8
    backbone steps, 8 tokens each.
    """
    if sentence_len < 1:
        raise ValueError(f"sentence_len must be >= 1, got {sentence_len}")
    bb = BackboneShape.from_config(backbone_config)
    vae = VAEShape.from_config(vae_config)
    L = sentence_len
    per_step = new_tokens / math.ceil(new_tokens / L)  # output tokens per backbone step
    base = bb.token_macs(prompt_tokens + new_tokens / 2)
    ctx_sent = (prompt_tokens + new_tokens / 2) / L
    # the body's own project_in/out (OPT-350M) and graftlm's proj_in/out to the VAE width
    body_proj = 2 * bb.hidden * bb.embed_dim if bb.embed_dim != bb.hidden else 0
    graft_proj = 2 * vae.hidden * bb.embed_dim if vae.hidden != bb.embed_dim else 0
    parts = {
        "backbone_step": (bb.layer_macs(ctx_sent) + body_proj + graft_proj) / per_step,
        "termination": 2 * bb.hidden / per_step,
        "encoder": vae.encoder_macs(L) / per_step,
        "sentence_setup": vae.sentence_setup_macs() / per_step,
        "decoder_layers": vae.decoder_token_macs((L + 1) / 2) - (vae.embed_dim * vae.vocab),
        "decoder_head": float(vae.embed_dim * vae.vocab),
    }
    return MacBound(backbone_per_token=base, sllm_per_token=sum(parts.values()), sllm_parts=parts)
