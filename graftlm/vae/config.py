"""SentenceVAEConfig: every architectural choice of a SentenceVAE, validated, JSON round trip."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUSIONS = ("sum", "mean", "weighted")
POSITIONS = ("rope", "sinusoidal")
ACTIVATIONS = ("gelu", "relu")
LOSSES = ("focal", "ce")
ENCODERS = ("transformer", "positional")
CONDITIONINGS = ("cross", "prefix")
DECODER_STYLES = ("standard", "llama")


# (field, lower bound, bound excluded, what the value means) for the float fields
_FLOAT_RANGES = (
    ("dropout", 0.0, False, "a probability"),
    ("focal_gamma", 0.0, False, "0 = plain cross-entropy, the paper uses 2"),
    ("rope_theta", 0.0, True, "the RoPE base, usually 10000"),
    ("layer_norm_eps", 0.0, True, "a small positive constant such as 1e-5"),
    ("init_std", 0.0, True, "the std of the normal weight init, e.g. 0.02"),
)


@dataclass
class SentenceVAEConfig:
    """Architecture of a SentenceVAE (encoder → one vector per segment → decoder).

    Two presets:

    * ``SentenceVAEConfig(vocab_size=...)`` – the modern default: pre-norm blocks, RoPE, GELU,
      FFN 4·h, mean fusion + LayerNorm, decoder head tied to the decoder embedding, no dropout.
      Why: pre-norm trains stably without warm-up at the high learning rates a small VAE wants;
      RoPE has no position table, so no sentence is ever too long (``max_tokens`` is then only the
      default generation cap); mean fusion keeps the fused vector's scale independent of the
      sentence length (a sum grows with L, which LayerNorm then has to undo); tying saves V·h
      parameters, the biggest matrix for BPE vocabularies.
    * ``SentenceVAEConfig.official(...)`` – exactly the authors' architecture (post-norm, ReLU,
      FFN 2·h, sinusoidal table of ``max_tokens`` = 64 positions added to the embeddings, dropout
      0.1, sum or learned weighted sum fusion, separate untied output Linear with bias, bos in
      front of the encoder input), so their checkpoints load with ``SentenceVAE.from_official``.

    Fields: ``num_layers`` is per stack (encoder and decoder each); ``ffn_size`` None = 4·h;
    ``embed_dim`` None = ``hidden_size`` (else a bias-free ``project_in`` maps it to h);
    ``max_tokens`` is the size of the sinusoidal table (a segment may have at most
    ``max_tokens - 1`` tokens, one position being bos) or, with RoPE, the default generation cap.

    How the vector is made and read (issue 19): ``encoder="transformer"`` (N blocks, then fusion)
    or ``"positional"`` (order-preserving: each position's embedding projected to
    ``positional_dim``, flattened over ``max_tokens`` positions, one linear layer added to the mean
    embedding, LayerNorm; no encoder blocks, so segments are at most ``max_tokens`` tokens);
    ``conditioning="cross"`` (cross-attention to the one vector in every decoder block) or
    ``"prefix"`` (one linear expansion into ``memory_slots`` decoder positions ahead of bos, read
    by causal self-attention in every block; no cross-attention). ``decoder_style="llama"``: the
    decoder's blocks are Llama's (RMSNorm, bias-free q/k/v/o with ``num_kv_heads`` grouped K/V,
    SwiGLU FFN of ``ffn_size``, RMSNorm at the end), so they can start as a Llama-family
    backbone's last layers (`SentenceVAE.decoder_from_backbone`); it needs prefix conditioning.
    """

    vocab_size: int
    hidden_size: int = 256
    num_heads: int = 4
    num_layers: int = 2
    ffn_size: int | None = None
    dropout: float = 0.0
    max_tokens: int = 64
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    embed_dim: int | None = None
    fusion: str = "mean"
    norm_first: bool = True
    position: str = "rope"
    activation: str = "gelu"
    tie_word_embeddings: bool = True
    encoder_bos: bool = False
    loss: str = "focal"
    focal_gamma: float = 2.0
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    encoder: str = "transformer"
    positional_dim: int = 64
    conditioning: str = "cross"
    memory_slots: int = 1
    decoder_style: str = "standard"
    num_kv_heads: int | None = None  # llama decoder: grouped K/V heads (None = num_heads)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ffn_size is None:
            self.ffn_size = 4 * self.hidden_size
        if self.embed_dim is None:
            self.embed_dim = self.hidden_size
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        for name in ("vocab_size", "hidden_size", "num_heads", "num_layers", "ffn_size", "max_tokens", "embed_dim",
                     "positional_dim", "memory_slots", "num_kv_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SentenceVAEConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                "pick a head count that divides it"
            )
        if self.position == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.hidden_size // self.num_heads}")
        if self.position == "sinusoidal" and self.hidden_size % 2:
            raise ValueError(f"sinusoidal positions need an even hidden_size, got {self.hidden_size}")
        if self.position == "sinusoidal" and self.max_tokens < 2:
            raise ValueError("max_tokens must be >= 2 with sinusoidal positions (bos + one token)")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value!r} is outside the vocabulary [0, {self.vocab_size})")
        for name, allowed in (("fusion", FUSIONS), ("position", POSITIONS), ("activation", ACTIVATIONS), ("loss", LOSSES),
                              ("encoder", ENCODERS), ("conditioning", CONDITIONINGS),
                              ("decoder_style", DECODER_STYLES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {allowed}")
        for name, low, strict, hint in _FLOAT_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (strict and value == low):
                bound = f"> {low}" if strict else f">= {low}"
                raise ValueError(f"SentenceVAEConfig.{name} must be a finite number {bound}, got {value!r}; {hint}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SentenceVAEConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.tie_word_embeddings and self.embed_dim != self.hidden_size:
            raise ValueError(
                f"tie_word_embeddings needs embed_dim == hidden_size (got {self.embed_dim} vs {self.hidden_size}); "
                "untie the head or drop embed_dim"
            )

        if self.conditioning == "cross" and self.memory_slots != 1:
            raise ValueError(f"memory_slots={self.memory_slots} needs conditioning='prefix' (cross-attention reads "
                             "the one vector); set conditioning='prefix' or memory_slots=1")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.decoder_style == "llama" and (self.conditioning != "prefix" or self.position != "rope"
                                              or not self.norm_first):
            raise ValueError("decoder_style='llama' needs conditioning='prefix', position='rope' and norm_first=True "
                             "(Llama blocks have no cross-attention and no position table)")
        if self.encoder == "positional" and self.encoder_bos and self.max_tokens < 2:
            raise ValueError("the positional encoder with encoder_bos needs max_tokens >= 2 (bos + one token)")

    @classmethod
    def official(
        cls, vocab_size: int, hidden_size: int = 768, num_heads: int = 12, num_layers: int = 1, **kw: Any
    ) -> "SentenceVAEConfig":
        """The authors' architecture (reference.md §2). Pass ``fusion="weighted"`` for their
        ``learnable_add``, ``embed_dim`` for OPT-350M-style ``project_in``. The token ids default
        to OPT's, as in all their checkpoints (pad 1, bos = eos = 2 ``</s>``); pass others for
        another tokenizer. Their YAML files / config dicts: `graftlm.vae.official.official_config`."""
        preset = dict(
            ffn_size=2 * hidden_size, dropout=0.1, max_tokens=64, fusion="sum", norm_first=False,
            position="sinusoidal", activation="relu", tie_word_embeddings=False, encoder_bos=True,
            loss="focal", focal_gamma=2.0, pad_token_id=1, bos_token_id=2, eos_token_id=2,
        )
        preset.update(kw)
        return cls(vocab_size=vocab_size, hidden_size=hidden_size, num_heads=num_heads, num_layers=num_layers, **preset)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_segment_tokens(self) -> int | None:
        """Longest segment (without bos/eos) the model accepts; None = no limit (RoPE, transformer encoder)."""
        limits = []
        if self.position == "sinusoidal":
            limits.append(self.max_tokens - 1)
        if self.encoder == "positional":  # one flattened slot per position
            limits.append(self.max_tokens - int(self.encoder_bos))
        return min(limits) if limits else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SentenceVAEConfig":
        if not isinstance(data, dict):
            raise TypeError(f"SentenceVAEConfig.from_dict expects a dict, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; known keys: {', '.join(known)}"
                raise ValueError(f"unknown SentenceVAEConfig key {key!r}{hint}")
        return cls(**data)

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> "SentenceVAEConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}; re-save it with SentenceVAE.save_pretrained") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of SentenceVAEConfig fields, got {type(data).__name__}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ValueError(f"{path} lacks the required SentenceVAEConfig field(s) {missing}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from err
