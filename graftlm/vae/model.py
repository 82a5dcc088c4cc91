"""SentenceVAE: a segment's tokens → one vector (encoder) → the same tokens (decoder).

Data path (B segments, L tokens each, right-padded; h = hidden size, V = vocabulary):

    input_ids (B, L) ──embed(+project_in)──positions──EncoderBlock×N──fusion over real tokens
        ──LayerNorm──▶ sentence vector (B, h)
        (encoder="positional": embed──PositionalFusion (mean + linear over the flattened,
        per-position projections)──LayerNorm; no blocks)
    [bos] + input_ids (B, L+1) ──embed──positions──DecoderBlock×N (causal self-attention,
        cross-attention to the vector as a (B, 1, h) memory)──head──▶ logits (B, L+1, V)
        (conditioning="prefix": m slots = expand(vector) ahead of bos, read by self-attention;
        no cross-attention; decoder_style="llama": Llama blocks, see `graftlm.vae.warm_start`)

The decoder's only view of the encoder is the vector. Despite the name there is no variational
part (as in the paper): a deterministic autoencoder.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.utils import ModelOutput

from graftlm.hub import PushToHubMixin
from graftlm.losses import cross_entropy_loss, focal_loss, sampled_softmax_logprobs
from graftlm.vae import checkpoint, official
from graftlm.vae.cache import DecoderCache, LayerCache
from graftlm.vae.config import SentenceVAEConfig
from graftlm.vae.generation import generate as generate_ids
from graftlm.vae.layers import (DecoderBlock, EncoderBlock, LlamaDecoderBlock, PositionalFusion, rope_tables,
                                sinusoidal_table)
from graftlm.vae.warm_start import decoder_from_backbone, warm_start_encoder


@dataclass
class DecodeOutput(ModelOutput):
    """Teacher-forced decoding, a transformers `ModelOutput` (``out.loss``, ``out["loss"]``,
    ``out[0]``). The output head runs only at the target positions (``packed_logits``): padding
    positions, often most of a batch of sentences, cost nothing. ``logits`` (B, L+1, V) is computed
    from ``hidden`` when first asked for (a property, not a key)."""

    loss: torch.Tensor | None = None  # () float: focal or CE, mean over target tokens
    token_logprobs: torch.Tensor | None = None  # (B, L+1) float32, log p(target), 0 where target_mask is False
    target_mask: torch.Tensor | None = None  # (B, L+1) bool: the real tokens and the eos after them
    packed_logits: torch.Tensor | None = None  # (N, V) logits at target_mask's True positions (None: sampled head)
    hidden: torch.Tensor | None = field(default=None, repr=False)  # (B, L+1, h) decoder states before the head

    @property
    def logits(self) -> torch.Tensor:
        """(B, L+1, V) logits at every position, padding included."""
        if "_logits" not in self.__dict__:
            head = _HEADS.get(id(self.target_mask)) if self.target_mask is not None else None
            if head is None or self.hidden is None:
                raise AttributeError("logits: no decoder head is known for this output; use packed_logits, "
                                     "or call the model again")
            self.__dict__["_logits"] = head(self.hidden)
        return self.__dict__["_logits"]

    def with_head(self, head: Any) -> "DecodeOutput":
        """Remember the output head that `logits` applies (not a key: it is a module)."""
        key = id(self.target_mask)
        if key not in _HEADS:
            weakref.finalize(self.target_mask, _HEADS.pop, key, None)  # forgotten with the mask
        _HEADS[key] = head
        return self


# id(target_mask) -> the head that made it, while that mask lives. Keyed by a tensor of the output
# rather than stored on it because a rebuilt output (accelerate converts mixed-precision outputs to
# fp32 by re-creating the mapping from its keys) keeps the same bool target_mask object but nothing
# else of the old one.
_HEADS: dict[int, Any] = {}


@dataclass
class SentenceVAEOutput(DecodeOutput):
    sentence_vectors: torch.Tensor | None = None  # (B, h)


class _Embedding(nn.Module):
    """Token embedding (+ bias-free project_in when embed_dim != h) + sinusoidal positions."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_token_id)
        self.project_in = (
            nn.Linear(config.embed_dim, config.hidden_size, bias=False)
            if config.embed_dim != config.hidden_size
            else None
        )
        if config.position == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(config.max_tokens, config.hidden_size), persistent=False)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = self.embed(ids)
        if self.project_in is not None:
            x = self.project_in(x)
        if self.config.position == "sinusoidal":
            # positions past the table only ever hold right padding (lengths are checked), which
            # no real token attends to, so clamping them is harmless
            pos = torch.arange(start, start + ids.shape[1], device=ids.device).clamp_max(self.config.max_tokens - 1)
            x = x + self.pos_table[pos].to(x.dtype)
        return x

    def rope(self, start: int, length: int, like: torch.Tensor):
        if self.config.position != "rope":
            return None
        c = self.config
        return rope_tables(start, length, c.head_dim, c.rope_theta, like.device, like.dtype)


class SentenceEncoder(nn.Module):
    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = _Embedding(config)
        self.drop = nn.Dropout(config.dropout)
        positional = config.encoder == "positional"
        self.positional = PositionalFusion(config) if positional else None
        self.layers = nn.ModuleList(EncoderBlock(config) for _ in range(0 if positional else config.num_layers))
        self.fusion_weight = nn.Linear(config.hidden_size, 1) if config.fusion == "weighted" and not positional else None
        self.fusion_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, L) long, mask (B, L) bool, no row all False → (B, h)."""
        x = self.drop(self.embedding(ids))
        if self.positional is not None:
            return self.fusion_norm(self.positional(x, mask))
        rope = self.embedding.rope(0, ids.shape[1], x)
        for layer in self.layers:
            x = layer(x, mask, rope)
        x = x.masked_fill(~mask[..., None], 0.0)  # padding never reaches the vector
        if self.config.fusion == "weighted":
            x = x * self.fusion_weight(x)  # unnormalised per-token weights, as the authors do
        fused = x.sum(1)
        if self.config.fusion == "mean":
            fused = fused / mask.sum(1, keepdim=True).to(x.dtype)
        return self.fusion_norm(fused)


class SentenceDecoder(nn.Module):
    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = _Embedding(config)
        self.drop = nn.Dropout(config.dropout)
        llama = config.decoder_style == "llama"
        self.layers = nn.ModuleList((LlamaDecoderBlock if llama else DecoderBlock)(config)
                                    for _ in range(config.num_layers))
        norm = nn.RMSNorm if llama else nn.LayerNorm
        self.norm = norm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_first else None
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=not config.tie_word_embeddings)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embedding.embed.weight
        self.prefix = config.memory_slots if config.conditioning == "prefix" else 0
        self.expand = nn.Linear(config.hidden_size, self.prefix * config.hidden_size) if self.prefix else None

    def slots(self, sentence_vectors: torch.Tensor) -> torch.Tensor:
        """(B, h) vectors → (B, m, h) prefix slots (``conditioning="prefix"``)."""
        m, h = self.config.memory_slots, self.config.hidden_size
        return self.expand(sentence_vectors).view(-1, m, h)

    def _layers(self, x, sentence_vectors, rope, cache: DecoderCache | None) -> torch.Tensor:
        memory = sentence_vectors[:, None, :].to(x.dtype) if self.prefix == 0 and cache is None else None
        for i, layer in enumerate(self.layers):
            if cache is not None:
                x = layer(x, cache.layers[i].memory_kv, rope, cache.layers[i])
            else:
                x = layer(x, layer.cross_attn.memory_kv(memory) if memory is not None else None, rope)
        return x

    def new_cache(self, sentence_vectors: torch.Tensor, capacity: int) -> DecoderCache:
        """A cache for ``capacity`` new tokens: with cross-attention, the vectors' K/V computed
        once; with prefix slots, the slots' K/V already run through every layer (``length`` = m)."""
        if self.prefix == 0:
            memory = sentence_vectors[:, None, :]
            return DecoderCache([LayerCache(layer.cross_attn.memory_kv(memory), capacity) for layer in self.layers])
        cache = DecoderCache([LayerCache(None, capacity + self.prefix) for _ in self.layers])
        x = self.slots(sentence_vectors)
        self._layers(x, sentence_vectors, self.embedding.rope(0, self.prefix, x), cache)
        return cache

    def forward(
        self, sentence_vectors: torch.Tensor, ids: torch.Tensor, cache: DecoderCache | None = None, head: bool = True
    ) -> torch.Tensor:
        """sentence_vectors (B, h), decoder input ids (B, T) starting with bos → logits (B, T, V)
        (``head=False``: the (B, T, h) states the output head would read).

        With ``cache``, ``ids`` are only the new positions (after ``cache.length`` cached ones,
        prefix slots included). Prefix slots take RoPE positions 0..m-1 and no sinusoidal position.
        """
        m = self.prefix
        start = cache.length if cache is not None else m
        x = self.embedding(ids, start - m)
        if cache is None and m:
            x = torch.cat([self.slots(sentence_vectors.to(x.dtype)), x], 1)
        x = self.drop(x)
        rope_start = start if cache is not None else 0
        x = self._layers(x, sentence_vectors, self.embedding.rope(rope_start, x.shape[1], x), cache)
        if cache is None and m:
            x = x[:, m:]
        if self.norm is not None:
            x = self.norm(x)
        return self.lm_head(x) if head else x


class SentenceVAE(PushToHubMixin, nn.Module):
    """Encoder + decoder; see the module docstring for the data path and shapes."""

    def __init__(self, config: SentenceVAEConfig) -> None:
        super().__init__()
        if not isinstance(config, SentenceVAEConfig):
            raise TypeError(f"SentenceVAE expects a SentenceVAEConfig, got {type(config).__name__}")
        self.config = config
        self.hidden_size = config.hidden_size
        self.encoder = SentenceEncoder(config)
        self.decoder = SentenceDecoder(config)
        self.sampled_negatives: int | None = None  # see use_sampled_head
        self.apply(self._init_weights)

    def use_sampled_head(self, negatives: int | None) -> None:
        """Train with a sampled softmax (the batch's targets + ``negatives`` uniform ids from the
        whole vocabulary) instead of the full one; None = full. Only in training mode: in eval
        mode (every reported figure) ``decode_loss`` uses the full softmax."""
        if negatives is not None and (isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 1):
            raise ValueError(f"sampled head negatives must be a positive int or None, got {negatives!r}")
        self.sampled_negatives = negatives

    def warm_start(self) -> None:
        """The first vector = LayerNorm(mean input embedding); see `graftlm.vae.warm_start.warm_start_encoder`."""
        warm_start_encoder(self)

    def decoder_from_backbone(self, backbone: nn.Module, num_layers: int | None = None) -> None:
        """Decoder = a Llama-family backbone's last layers + final norm (+ tied head); see
        `graftlm.vae.warm_start.decoder_from_backbone`."""
        decoder_from_backbone(self, backbone, num_layers)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    # ---------------------------------------------------------------- inputs
    def _check_tokens(self, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate (B, L) ids + mask; return long ids (pad id at padding) and a bool mask."""
        c = self.config
        for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D (batch, tokens), got shape {tuple(t.shape)}")
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
        if attention_mask.dtype.is_floating_point:
            raise TypeError(f"attention_mask must be bool (True = real token) or 0/1 int, got {attention_mask.dtype}")
        if input_ids.shape[0] == 0:
            raise ValueError("empty batch: input_ids has 0 rows")
        mask = attention_mask.to(torch.bool)
        lengths = mask.sum(1)
        if input_ids.shape[1] == 0 or bool((lengths == 0).any()):
            raise ValueError("a row of attention_mask is all padding (an empty segment); drop empty segments first")
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("attention_mask must be right-padded (True…True False…False in every row)")
        ids = input_ids.long().masked_fill(~mask, c.pad_token_id)
        if c.encoder_bos and bool((ids[:, 0] == c.bos_token_id).any()):
            rows = (ids[:, 0] == c.bos_token_id).nonzero().flatten().tolist()[:8]
            raise ValueError(
                f"rows {rows} start with the bos id {c.bos_token_id}, which graftlm adds itself: the authors' "
                "tokenizer output starts with </s>; strip it (graftlm.vae.official.strip_official_bos; their "
                "SentenceLLM batches: graftlm.sllm.official.strip_official_layout)")
        real = ids[mask]
        if bool(((real < 0) | (real >= c.vocab_size)).any()):
            raise ValueError(f"input_ids contain ids outside the vocabulary [0, {c.vocab_size}) at real tokens")
        limit = c.max_segment_tokens
        if limit is not None and int(lengths.max()) > limit:
            raise ValueError(
                f"a segment has {int(lengths.max())} tokens but this model's sinusoidal table allows at most "
                f"{limit} (max_tokens={c.max_tokens}, one position is bos); segment more finely"
            )
        return ids, mask

    def _check_vectors(self, sentence_vectors) -> torch.Tensor:
        if not isinstance(sentence_vectors, torch.Tensor):
            raise TypeError(f"sentence_vectors must be a torch.Tensor, got {type(sentence_vectors).__name__}")
        if sentence_vectors.dim() != 2 or sentence_vectors.shape[1] != self.hidden_size:
            raise ValueError(f"sentence_vectors must be (B, {self.hidden_size}), got {tuple(sentence_vectors.shape)}")
        if not sentence_vectors.dtype.is_floating_point:
            raise TypeError(f"sentence_vectors must be floating point, got {sentence_vectors.dtype}")
        if sentence_vectors.shape[0] == 0:
            raise ValueError("empty batch: sentence_vectors has 0 rows")
        return sentence_vectors

    # ---------------------------------------------------------------- encoder
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) int, attention_mask (B, L) bool/0-1, right-padded → (B, h) float."""
        ids, mask = self._check_tokens(input_ids, attention_mask)
        if self.config.encoder_bos:
            ids = F.pad(ids, (1, 0), value=self.config.bos_token_id)
            mask = F.pad(mask, (1, 0), value=True)
        return self.encoder(ids, mask)

    # ---------------------------------------------------------------- decoder
    def _decoder_io(self, ids: torch.Tensor, mask: torch.Tensor):
        """Decoder input [bos]+ids, targets ids+[eos] at each row's own end, target mask."""
        c = self.config
        lengths = mask.sum(1)
        inputs = F.pad(ids, (1, 0), value=c.bos_token_id)
        targets = F.pad(ids, (0, 1), value=c.pad_token_id)
        eos_at = F.one_hot(lengths, ids.shape[1] + 1).bool()
        targets = targets.masked_fill(eos_at, c.eos_token_id)
        return inputs, targets, F.pad(mask, (0, 1), value=False) | eos_at

    def decode_logits(
        self, sentence_vectors: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: (B, h) vectors + (B, L) target ids → logits (B, L+1, V). Position i
        predicts token i; position ``length`` of each row predicts eos."""
        vectors = self._check_vectors(sentence_vectors)
        ids, mask = self._check_tokens(input_ids, attention_mask)
        self._check_batch(vectors, ids)
        inputs, _, _ = self._decoder_io(ids, mask)
        return self.decoder(vectors, inputs)

    def decode_loss(
        self, sentence_vectors: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> DecodeOutput:
        vectors = self._check_vectors(sentence_vectors)
        ids, mask = self._check_tokens(input_ids, attention_mask)
        self._check_batch(vectors, ids)
        inputs, targets, target_mask = self._decoder_io(ids, mask)
        hidden = self.decoder(vectors, inputs, head=False)
        if self.training and self.sampled_negatives:  # training-only; eval mode always uses the full softmax
            packed = None
            picked = sampled_softmax_logprobs(hidden[target_mask], self.decoder.lm_head, targets[target_mask],
                                              self.sampled_negatives)
        else:
            packed = self.decoder.lm_head(hidden[target_mask])  # (N, V): only where there is a target
            picked = torch.log_softmax(packed.float(), dim=-1).gather(-1, targets[target_mask][:, None])[:, 0]
        logprobs = torch.zeros(target_mask.shape, dtype=torch.float32, device=picked.device)
        logprobs = logprobs.masked_scatter(target_mask, picked)
        if self.config.loss == "focal":
            loss = focal_loss(logprobs, target_mask, self.config.focal_gamma)
        else:
            loss = cross_entropy_loss(logprobs, target_mask)
        return DecodeOutput(loss, logprobs, target_mask, packed, hidden).with_head(self.decoder.lm_head)

    @staticmethod
    def _check_batch(vectors: torch.Tensor, ids: torch.Tensor) -> None:
        if vectors.shape[0] != ids.shape[0]:
            raise ValueError(f"{vectors.shape[0]} sentence vectors but {ids.shape[0]} rows of input_ids")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SentenceVAEOutput:
        """Reconstruction: encode, then decode with teacher forcing. Returns loss, logits (B, L+1, V),
        token_logprobs/target_mask (B, L+1) and the (B, h) sentence vectors."""
        vectors = self.encode(input_ids, attention_mask)
        out = self.decode_loss(vectors, input_ids, attention_mask)
        return SentenceVAEOutput(out.loss, out.token_logprobs, out.target_mask, out.packed_logits, out.hidden,
                                 vectors).with_head(self.decoder.lm_head)

    # ---------------------------------------------------------------- generation
    def generate(self, sentence_vectors: torch.Tensor, max_new_tokens: int | None = None, **kwargs):
        """Decode (B, h) vectors → one id list per row (no bos/eos), or ``(ids, mask)`` with
        ``return_tensors=True``. Options (``do_sample``, ``temperature``, ``top_k``, ``top_p``,
        ``use_cache``, ``ignore_eos``, ``generator``): ``graftlm.vae.generation.generate``."""
        return generate_ids(self, self._check_vectors(sentence_vectors), max_new_tokens, **kwargs)

    # ---------------------------------------------------------------- weights
    @torch.no_grad()
    def init_embeddings_from(self, weight: torch.Tensor) -> None:
        """Copy a backbone's (V, d) token embedding into the encoder and decoder embeddings."""
        c = self.config
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise TypeError("init_embeddings_from expects a 2-D (vocab, dim) tensor")
        if weight.shape[0] != c.vocab_size:
            raise ValueError(f"embedding has {weight.shape[0]} rows but the config's vocab_size is {c.vocab_size}")
        if weight.shape[1] != c.embed_dim:
            raise ValueError(
                f"embedding width {weight.shape[1]} != embed_dim {c.embed_dim}; build the config with "
                f"embed_dim={weight.shape[1]} (a project_in to hidden_size={c.hidden_size} is added)"
            )
        for part in (self.encoder, self.decoder):
            part.embedding.embed.weight.copy_(weight)

    def save_pretrained(self, directory: str | Path, *, model_card: dict[str, Any] | None = None) -> None:
        """``config.json`` + ``model.safetensors`` + ``README.md``, atomically (`graftlm.vae.checkpoint`)."""
        checkpoint.save_pretrained(self, directory, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device=None, dtype: torch.dtype | None = None,
                        **hub_kwargs: Any) -> "SentenceVAE":
        """A `save_pretrained` folder or a model-hub id (``revision``, ``cache_dir``, ``token``)."""
        return checkpoint.from_pretrained(cls, name_or_path, device=device, dtype=dtype, **hub_kwargs)

    @classmethod
    def from_official(cls, path: str | Path, config: Any, *, use_ema: bool | None = None,
                      backbone_config: Any = None) -> "SentenceVAE":
        """The authors' ``.pth`` (never unpickled); ``config`` = their YAML path, their config dict
        or a SentenceVAEConfig. See `graftlm.vae.official` (``use_ema``, their input layout)."""
        return official.from_official(cls, path, config, use_ema=use_ema, backbone_config=backbone_config)
