"""Building blocks of the SentenceVAE: positions, attention modules, encoder/decoder blocks.

Parameter names follow PyTorch's ``nn.TransformerEncoderLayer``/``TransformerDecoderLayer``
(``linear1``, ``linear2``, ``norm1..3``, ``out_proj``), and self-attention keeps one fused
``qkv`` projection like their ``in_proj_weight``, so official checkpoints map onto these modules
by renaming (cross-attention splits the fused projection into ``q_proj`` and ``kv_proj``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from graftlm.attention import attention
from graftlm.vae.cache import LayerCache
from graftlm.vae.config import SentenceVAEConfig


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) fp32: sin at even, cos at odd features, wavelengths 2π..10000·2π."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


def rope_tables(
    start: int, length: int, head_dim: int, theta: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (length, head_dim) for positions start..start+length-1 (rotate-half layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(start, start + length, device=device, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, L, D) queries or keys by the (L, D) tables."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class SelfAttention(nn.Module):
    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(h, 3 * h)
        self.out_proj = nn.Linear(h, h)

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool,
        key_padding_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """x (B, L, h) → (B, L, h). With ``cache``, x holds only the new positions and the keys
        and values of earlier positions come from (and are appended to) the cache."""
        q, k, v = rearrange(self.qkv(x), "b l (three n d) -> three b n l d", three=3, n=self.num_heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.append(k, v)
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, dropout_p=p)
        return self.out_proj(rearrange(out, "b n l d -> b l (n d)"))


class CrossAttention(nn.Module):
    """Attention from the decoder's tokens to the memory (the one sentence vector)."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(h, h)
        self.kv_proj = nn.Linear(h, 2 * h)
        self.out_proj = nn.Linear(h, h)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (B, M, h) → keys, values (B, H, M, D); computed once per sentence vector."""
        k, v = rearrange(self.kv_proj(memory), "b m (two n d) -> two b n m d", two=2, n=self.num_heads)
        return k, v

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q = rearrange(self.q_proj(x), "b l (n d) -> b n l d", n=self.num_heads)
        p = self.dropout if self.training else 0.0
        out = attention(q, *memory_kv, dropout_p=p)
        return self.out_proj(rearrange(out, "b n l d -> b l (n d)"))


class _Block(nn.Module):
    """Shared FFN / norm / residual plumbing of the encoder and decoder blocks."""

    def __init__(self, config: SentenceVAEConfig, num_norms: int) -> None:
        super().__init__()
        h, eps = config.hidden_size, config.layer_norm_eps
        self.norm_first = config.norm_first
        self.linear1 = nn.Linear(h, config.ffn_size)
        self.linear2 = nn.Linear(config.ffn_size, h)
        self.activation = F.gelu if config.activation == "gelu" else F.relu
        self.drop = nn.Dropout(config.dropout)
        for i in range(1, num_norms + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(h, eps=eps))

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.drop(self.activation(self.linear1(x))))

    def _residual(self, x: torch.Tensor, sublayer, norm: nn.LayerNorm) -> torch.Tensor:
        if self.norm_first:
            return x + self.drop(sublayer(norm(x)))
        return norm(x + self.drop(sublayer(x)))


class EncoderBlock(_Block):
    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__(config, num_norms=2)
        self.self_attn = SelfAttention(config)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor, rope=None) -> torch.Tensor:
        """x (B, L, h), key_padding_mask (B, L) bool (True = real token) → (B, L, h)."""
        attend = lambda y: self.self_attn(y, causal=False, key_padding_mask=key_padding_mask, rope=rope)
        x = self._residual(x, attend, self.norm1)
        return self._residual(x, self._ffn, self.norm2)


class DecoderBlock(_Block):
    """Causal self-attention, cross-attention to the memory (``conditioning="cross"`` only; with
    prefix slots the vector is read by self-attention), FFN. ``norm3`` is the FFN's norm in both
    modes, so official checkpoints keep their names."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__(config, num_norms=3)
        self.self_attn = SelfAttention(config)
        if config.conditioning == "cross":
            self.cross_attn = CrossAttention(config)
        else:
            self.cross_attn = None
            self.norm2 = None

    def forward(self, x, memory_kv=None, rope=None, cache: LayerCache | None = None) -> torch.Tensor:
        """x (B, L, h) → (B, L, h)."""
        x = self._residual(x, lambda y: self.self_attn(y, causal=True, rope=rope, cache=cache), self.norm1)
        if self.cross_attn is not None:
            x = self._residual(x, lambda y: self.cross_attn(y, memory_kv), self.norm2)
        return self._residual(x, self._ffn, self.norm3)


class LlamaSelfAttention(nn.Module):
    """Llama's attention: bias-free q/k/v/o, ``num_kv_heads`` K/V heads shared by groups of query
    heads (the cache stores the K/V heads only). Names match HF's, so a backbone layer's state
    dict loads as it is."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        h, d = config.hidden_size, config.head_dim
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(h, self.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, self.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, self.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(self.num_heads * d, h, bias=False)

    def forward(self, x: torch.Tensor, rope, cache: LayerCache | None = None) -> torch.Tensor:
        q = rearrange(self.q_proj(x), "b l (n d) -> b n l d", n=self.num_heads)
        k = rearrange(self.k_proj(x), "b l (n d) -> b n l d", n=self.num_kv_heads)
        v = rearrange(self.v_proj(x), "b l (n d) -> b n l d", n=self.num_kv_heads)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.append(k, v)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = attention(q, k, v, causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(rearrange(out, "b n l d -> b l (n d)"))


class GatedFFN(nn.Module):
    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.ffn_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.ffn_size, bias=False)
        self.down_proj = nn.Linear(config.ffn_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderBlock(nn.Module):
    """A Llama decoder layer (pre-RMSNorm attention and SwiGLU FFN), HF's parameter names."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = LlamaSelfAttention(config)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = GatedFFN(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, memory_kv=None, rope=None, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.input_layernorm(x), rope, cache))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class PositionalFusion(nn.Module):
    """The order-preserving fusion of ``encoder="positional"``: the mean of the real tokens'
    embeddings plus one linear layer over every position's projected embedding, flattened in
    order (CALM's autoencoder: per-token projection, flatten, linear). Padding is zeroed after the
    projection (its bias too), so it contributes nothing. Attention-free: pooling a transformer's
    outputs blurs which token stood where, a flattened layout keeps each position's own weights.
    ``flat`` is the residual branch; zeroed, the fusion is exactly the mean embedding."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.slots = config.max_tokens
        self.proj = nn.Linear(config.hidden_size, config.positional_dim)
        self.flat = nn.Linear(config.max_tokens * config.positional_dim, config.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, h) embeddings, mask (B, L) bool with at most ``max_tokens`` real tokens a row → (B, h)."""
        x, mask = x[:, : self.slots], mask[:, : self.slots]  # columns past the slots hold only padding
        keep = mask[..., None].to(x.dtype)
        mean = (x * keep).sum(1) / keep.sum(1)
        z = self.proj(x) * keep
        z = F.pad(z, (0, 0, 0, self.slots - z.shape[1]))
        return mean + self.flat(z.flatten(1))
