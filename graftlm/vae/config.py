"""SentenceVAEConfig: every architectural choice of a SentenceVAE, validated, saved as ``config.json``.

A `transformers.PretrainedConfig` (``model_type = "sentence_vae"``, registered with ``AutoConfig``),
so ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` / ``AutoConfig.from_pretrained`` work as
for any transformers model. Its own fields are declared once, with their types and ranges, in
`SentenceVAEFields` (pydantic, ``extra="forbid"``): add a field there (and to the model that reads
it); nothing else needs to change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from transformers import AutoConfig, PretrainedConfig

from graftlm.atomic import write_text
from graftlm.validation import check_known_keys

FUSIONS = ("sum", "mean", "weighted")
POSITIONS = ("rope", "sinusoidal")
ACTIVATIONS = ("gelu", "relu")
LOSSES = ("focal", "ce")

_Size = Annotated[int, Field(ge=1, description="a positive int")]
_TokenId = Annotated[int, Field(description="a token id inside the vocabulary")]


def _positive(hint: str) -> Any:
    return Annotated[float, Field(gt=0.0, allow_inf_nan=False, description=f"a finite number > 0.0; {hint}")]


class SentenceVAEFields(BaseModel):
    """The fields of `SentenceVAEConfig`, their types, ranges and defaults (the modern preset)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=False)

    vocab_size: _Size
    hidden_size: _Size = 256
    num_heads: _Size = 4
    num_layers: _Size = 2  # per stack (encoder and decoder each)
    ffn_size: _Size | None = None  # None = 4·h
    dropout: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False, description="a probability in [0, 1)")] = 0.0
    max_tokens: _Size = 64
    pad_token_id: _TokenId = 0
    bos_token_id: _TokenId = 1
    eos_token_id: _TokenId = 2
    embed_dim: _Size | None = None  # None = hidden_size (else a bias-free project_in maps it to h)
    fusion: Literal["sum", "mean", "weighted"] = "mean"
    norm_first: bool = True
    position: Literal["rope", "sinusoidal"] = "rope"
    activation: Literal["gelu", "relu"] = "gelu"
    tie_word_embeddings: bool = True
    encoder_bos: bool = False
    loss: Literal["focal", "ce"] = "focal"
    focal_gamma: Annotated[float, Field(ge=0.0, allow_inf_nan=False, description=(
        "a finite number >= 0.0; 0 = plain cross-entropy, the paper uses 2"))] = 2.0
    rope_theta: _positive("the RoPE base, usually 10000") = 10000.0
    layer_norm_eps: _positive("a small positive constant such as 1e-5") = 1e-5
    init_std: _positive("the std of the normal weight init, e.g. 0.02") = 0.02
    # issue 19: how the vector is made and read (see SentenceVAEConfig's docstring)
    encoder: Literal["transformer", "positional"] = "transformer"
    positional_dim: _Size = 64  # positional encoder: per-position projection width
    conditioning: Literal["cross", "prefix"] = "cross"
    memory_slots: _Size = 1  # prefix conditioning: decoder positions per vector
    decoder_style: Literal["standard", "llama"] = "standard"
    num_kv_heads: _Size | None = None  # llama decoder: grouped K/V heads (None = num_heads)
    extra: dict[str, Any] = Field(default_factory=dict)  # free-form notes, saved with the config

    @model_validator(mode="after")
    def _relations(self) -> "SentenceVAEFields":
        if self.ffn_size is None:
            self.ffn_size = 4 * self.hidden_size
        if self.embed_dim is None:
            self.embed_dim = self.hidden_size
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                             "pick a head count that divides it")
        if self.position == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.hidden_size // self.num_heads}")
        if self.position == "sinusoidal" and self.hidden_size % 2:
            raise ValueError(f"sinusoidal positions need an even hidden_size, got {self.hidden_size}")
        if self.position == "sinusoidal" and self.max_tokens < 2:
            raise ValueError("max_tokens must be >= 2 with sinusoidal positions (bos + one token)")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)!r} is outside the vocabulary [0, {self.vocab_size})")
        if self.tie_word_embeddings and self.embed_dim != self.hidden_size:
            raise ValueError(f"tie_word_embeddings needs embed_dim == hidden_size (got {self.embed_dim} vs "
                             f"{self.hidden_size}); untie the head or drop embed_dim")
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
        return self


FIELD_NAMES = tuple(SentenceVAEFields.model_fields)


def _field_error(error: ValidationError) -> ValueError:
    """The first problem of ``error`` as one sentence naming the field, its value and what it must be."""
    err = error.errors()[0]
    name = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    if err["type"] == "value_error":
        return ValueError(err["msg"].removeprefix("Value error, "))
    if err["type"] == "missing":
        return ValueError(f"SentenceVAEConfig.{name} is required")
    if err["type"] == "literal_error":
        options = tuple(SentenceVAEFields.model_fields[name].annotation.__args__)
        return ValueError(f"unknown {name} {value!r}; choose one of {options}")
    field = SentenceVAEFields.model_fields.get(str(err["loc"][0]))
    need = next((m.description for m in (field.metadata if field else ()) if getattr(m, "description", None)), None)
    need = need or (field.description if field else None) or err["msg"]
    return ValueError(f"SentenceVAEConfig.{name} must be {need}, got {value!r}")


_BASE_KEYS: frozenset[str] | None = None


def _base_keys() -> frozenset[str]:
    """Keys `PretrainedConfig` itself accepts and writes (transformers_version, architectures, ...)."""
    global _BASE_KEYS
    if _BASE_KEYS is None:
        base = PretrainedConfig()
        _BASE_KEYS = frozenset({*vars(base), *base.to_dict(), "transformers_version", "model_type", "torch_dtype",
                                "dtype", "name_or_path", "_name_or_path", "_commit_hash", "attn_implementation"})
    return _BASE_KEYS


class SentenceVAEConfig(PretrainedConfig):
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

    Fields (types, ranges, defaults): `SentenceVAEFields`. ``num_layers`` is per stack;
    ``max_tokens`` is the size of the sinusoidal table (a segment may have at most
    ``max_tokens - 1`` tokens, one position being bos) or, with RoPE, the default generation cap.
    An unknown keyword is an error naming the closest field.

    How the vector is made and read (issue 19): ``encoder="transformer"`` (N blocks, then fusion)
    or ``"positional"`` (order-preserving: each position's embedding projected to
    ``positional_dim``, flattened over ``max_tokens`` positions, one linear layer added to the mean
    embedding, LayerNorm; no encoder blocks, so segments are at most ``max_tokens`` tokens);
    ``conditioning="cross"`` (cross-attention to the one vector in every decoder block) or
    ``"prefix"`` (one linear expansion into ``memory_slots`` decoder positions ahead of bos, read
    by causal self-attention in every block). ``decoder_style="llama"``: Llama decoder blocks
    (RMSNorm, bias-free q/k/v/o with ``num_kv_heads`` grouped K/V, SwiGLU FFN of ``ffn_size``),
    so they can start as a Llama-family backbone's last layers (`SentenceVAE.decoder_from_backbone`).
    """

    model_type = "sentence_vae"

    def __init__(self, vocab_size: int | None = None, **kwargs: Any) -> None:
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in SentenceVAEFields.model_fields}
        if vocab_size is not None:
            ours["vocab_size"] = vocab_size
        check_known_keys([k for k in kwargs if k not in _base_keys()], FIELD_NAMES, "SentenceVAEConfig")
        try:
            fields = SentenceVAEFields(**ours)
        except ValidationError as err:
            raise _field_error(err) from None
        values = fields.model_dump()
        super().__init__(**kwargs, **{k: values[k] for k in (
            "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings")})
        for name, value in values.items():
            setattr(self, name, value)

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

    def __eq__(self, other: object) -> bool:
        """Same class and the same architecture (transformers bookkeeping such as the version that
        wrote the file does not count)."""
        return type(other) is type(self) and other.fields_dict() == self.fields_dict()

    __hash__ = None  # mutable, like every PretrainedConfig

    def fields_dict(self) -> dict[str, Any]:
        """Only the SentenceVAE's own fields (no transformers bookkeeping)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def replace(self, **changes: Any) -> "SentenceVAEConfig":
        """A validated copy with ``changes`` applied."""
        return type(self)(**{**self.fields_dict(), **changes})

    def to_diff_dict(self) -> dict[str, Any]:
        """Every own field (a config.json states the whole architecture) plus the transformers keys
        that differ from `PretrainedConfig`'s defaults."""
        full = self.to_dict()
        base = PretrainedConfig().to_dict()
        keep = {*FIELD_NAMES, "model_type", "transformers_version"}
        return {k: v for k, v in full.items() if k in keep or k not in base or base[k] != v}

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        if not isinstance(config_dict, dict):
            raise TypeError(f"SentenceVAEConfig.from_dict expects a dict, got {type(config_dict).__name__}")
        return super().from_dict(config_dict, **kwargs)

    def to_json_file(self, json_file_path: str | Path, use_diff: bool = True) -> None:
        write_text(json_file_path, self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_json_file(cls, json_file: str | Path) -> "SentenceVAEConfig":
        path = json_file
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}; re-save it with SentenceVAE.save_pretrained") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of SentenceVAEConfig fields, got {type(data).__name__}")
        if "vocab_size" not in data:
            raise ValueError(f"{path} lacks the required SentenceVAEConfig field(s) ['vocab_size']")
        if data.get("model_type", cls.model_type) != cls.model_type:
            raise ValueError(f"{path} is a {data['model_type']!r} config, not a SentenceVAE's ({cls.model_type!r})")
        try:
            return cls(**data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from err


AutoConfig.register(SentenceVAEConfig.model_type, SentenceVAEConfig, exist_ok=True)
