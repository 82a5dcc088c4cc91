"""Training recipes: one flat YAML file per run, validated against :class:`TrainConfig` (a pydantic
dataclass: `graftlm.validation` says why).

No ``__base__`` includes: every recipe states all it changes from the defaults below, so a recipe
can be read on its own. ``graftlm train RECIPE --set key=value`` overrides single fields (values
are parsed as YAML: ``--set max_steps=10 --set mixed_precision=bf16``). An unknown key — in the
file or in ``--set`` — is an error that names it and suggests the closest valid keys.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, StrictBool, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from graftlm.suggest import did_you_mean
from graftlm.validation import readable_error


PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Number = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]

# advice appended to a range error of these keys
HINTS = {
    "max_grad_norm": "gradients are clipped to this norm; 1.0 is the usual value (a value <= 0 would turn clipping "
                     "into no learning or gradient ascent)",
    "lr": "a learning rate", "base_lr": "a learning rate",
    "ema_momentum": "or null (no EMA)", "lora_rank": "or null (no LoRA)",
}


@dataclass(config=ConfigDict(extra="forbid"))
class TrainConfig:
    """One training run. Types and ranges are declared on the fields (pydantic validates them when
    the config is built; ints written as 3.0 and floats YAML reads as strings, such as 1e-7, are
    accepted); `from_dict` / `load_recipe` turn a problem into a ValueError naming the key."""

    # what to train
    name: str = "run"
    model: Literal["svae", "sllm"] = "svae"
    # data (see graftlm.training.data.read_corpus)
    data_path: str | None = None  # file, folder, HF dataset dir, or "packaged:pydoc" / "packaged:kjv"
    data_format: Literal["auto", "text", "jsonl", "parquet", "hf"] = "auto"
    text_field: str = "content"  # JSON-lines / parquet / HF column holding the text (WanJuan: content)
    encoding: str | None = None  # text / JSON-lines files: None = strict UTF-8 (a file that is not is an error)
    heldout_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01  # documents hashed into the held-out split
    eval_size: PositiveInt = 1000  # held-out segments (SVAE) or paragraphs (SLLM) evaluated
    max_tokens: PositiveInt = 64  # tokens per segment (segmenter budget)
    max_sentences: PositiveInt = 64  # segments per paragraph window (SLLM)
    num_workers: Count = 0
    prefetch_factor: PositiveInt = 2
    shuffle_buffer: PositiveInt = 1000  # documents
    bucket_pool: PositiveInt = 64  # SVAE: batches' worth of segments sorted by length together
    # tokenizer / model
    tokenizer: str = "byte"  # "byte" (ByteTokenizer) | "smollm2" | an HF tokenizer name or path
    hidden_size: PositiveInt = 768
    num_heads: PositiveInt = 12
    num_layers: PositiveInt = 1
    vae_preset: Literal["official", "modern"] = "official"  # official (paper architecture) | modern
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    vae_path: str | None = None  # start from a saved SentenceVAE (save_pretrained folder)
    init_embeddings: StrictBool = True  # SVAE embeddings from the backbone's (when there is one)
    backbone: str | None = None  # "smollm2" | HF name/path (facebook/opt-125m ...)
    freeze: Literal["none", "vae", "backbone"] = "none"
    train_layers: Count | None = None  # keep only the first and last k backbone layers trainable
    termination_gamma: NonNegative = 2.0
    attention: Literal["causal", "bidirectional"] = "causal"  # bidirectional: the authors' leak (research only)
    segment_rule: Literal["semantic", "paper"] = "semantic"  # RegexSegmenter rule
    min_tokens: PositiveInt | None = None  # merge clauses shorter than this many tokens (None: no merging)
    vae_loss: Literal["focal", "ce"] | None = None  # None: the preset's, focal
    freeze_embeddings: StrictBool = False  # the VAE's token embeddings (from the backbone's) stay frozen
    # issue 19's levers (SentenceVAEConfig fields of the same meaning; modern preset only)
    vae_encoder: Literal["transformer", "positional"] = "transformer"  # positional: order-preserving
    positional_dim: PositiveInt = 64  # positional encoder: per-position projection width
    vae_conditioning: Literal["cross", "prefix"] = "cross"  # prefix: memory_slots positions ahead of bos
    memory_slots: PositiveInt = 1  # prefix conditioning: slots per sentence vector
    warm_start: StrictBool = False  # SVAE: the first vector = normed mean of the (backbone's) embeddings
    decoder_from_backbone: PositiveInt | None = None  # SVAE: Llama decoder = the backbone's last k layers + norm + head
    train_head: Literal["full", "sampled"] = "full"  # sampled: training only; every reported figure is full softmax
    head_negatives: PositiveInt = 4096  # sampled head: ids drawn from the whole vocabulary per batch
    lora_rank: PositiveInt | None = None  # SLLM: LoRA of this rank on the backbone body (its other weights freeze)
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"  # comma-separated module names for LoRA
    distill_weight: NonNegative = 0.0  # SLLM: weight of KL(backbone teacher || sentence decoder) per token
    distill_topk: PositiveInt = 32  # teacher tokens kept per position for the KL
    reconstruction_weight: NonNegative = 0.0  # SLLM: weight of the VAE's own loss on the target sentences
    # optimisation
    batch_size: PositiveInt = 128  # per process: segments (SVAE) or paragraph windows (SLLM)
    gradient_accumulation_steps: PositiveInt = 1
    base_lr: Positive | None = 1e-7  # paper: lr = batch_size × base_lr
    lr: Positive | None = None  # absolute peak lr; overrides base_lr when set
    weight_decay: NonNegative = 0.01
    max_grad_norm: Positive = 1.0
    warmup_steps: Count = 5000
    warmup_start_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    cosine_steps: Count = 20000
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # lr held at min_lr_ratio × lr after the cosine
    max_steps: PositiveInt = 300000
    max_minutes: Positive | None = None  # training-time budget: steps (and the cosine) re-planned to fit it
    ema_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 2e-4  # null disables EMA
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    # bookkeeping
    output_dir: str = "runs/{name}"
    save_every: PositiveInt = 5000
    keep_last: Count = 2
    log_every: PositiveInt = 10
    eval_every: PositiveInt = 5000
    eval_batches: PositiveInt = 8  # batches of held-out data at each periodic eval (the final eval uses eval_size)
    tensorboard: StrictBool = False
    # smoke overrides (--smoke): tiny model, few steps, packaged text
    smoke: StrictBool = False

    @model_validator(mode="after")
    def _relations(self) -> "TrainConfig":
        if self.min_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"recipe key 'min_tokens' must be between 1 and max_tokens={self.max_tokens} or null, "
                             f"got {self.min_tokens}")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"recipe key 'encoding' is {self.encoding!r}, which Python does not know; "
                                 "use e.g. utf-8, latin-1, cp1252 (or null for strict UTF-8)") from None
        if self.model == "sllm" and not self.backbone:
            raise ValueError("an sllm recipe needs `backbone` (e.g. facebook/opt-125m or smollm2)")
        if self.vae_preset == "official" and (self.vae_encoder != "transformer" or self.vae_conditioning != "cross"):
            raise ValueError("recipe keys 'vae_encoder'/'vae_conditioning' other than transformer/cross need "
                             "vae_preset: modern (the official preset is the authors' architecture)")
        if self.decoder_from_backbone is not None and (
                self.vae_preset != "modern" or self.vae_conditioning != "prefix" or self.model != "svae"
                or self.backbone != "smollm2" or not self.init_embeddings):
            raise ValueError("recipe key 'decoder_from_backbone' is a SentenceVAE warm start: it needs model: svae, "
                             "backbone: smollm2, init_embeddings: true, vae_preset: modern and vae_conditioning: prefix")
        if self.reconstruction_weight > 0 and (self.model != "sllm" or self.freeze == "vae"):
            raise ValueError("recipe key 'reconstruction_weight' keeps a trainable VAE an autoencoder during the SLLM "
                             "phase: it needs model: sllm and a VAE that trains (not freeze: vae)")
        if self.train_head == "sampled" and self.distill_weight > 0:
            raise ValueError("recipe key 'train_head: sampled' cannot be combined with distill_weight > 0 "
                             "(distillation needs the full logits)")
        self.peak_lr()
        return self

    def peak_lr(self) -> float:
        """``lr`` if set, else ``batch_size × base_lr`` (per-process batch, like the authors' configs)."""
        if self.lr is not None:
            return float(self.lr)
        if self.base_lr is None:
            raise ValueError("the recipe sets neither lr nor base_lr: set one of them")
        return float(self.batch_size) * float(self.base_lr)

    def run_dir(self) -> Path:
        return Path(self.output_dir.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A validated config; ValueError naming the first bad key (and close matches of an unknown one)."""
        try:
            return cls(**data)
        except ValidationError as err:
            raise readable_error(err, lambda key: f"recipe key {key!r}", unknown="recipe key", known=FIELDS,
                                 hints=HINTS) from None

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes`` applied."""
        return self.from_dict({**self.to_dict(), **changes})

    def validate(self) -> "TrainConfig":
        """Check the current values again (after fields were assigned); returns a validated copy."""
        return self.from_dict(self.to_dict())


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def check_keys(keys: Any, source: str) -> None:
    """Raise ValueError for the first unknown key, naming close matches."""
    for key in keys:
        if key not in FIELDS:
            raise ValueError(f"unknown recipe key {key!r} in {source}; {did_you_mean(key, sorted(FIELDS), listing='valid keys')}")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ValueError(f"--set {key.strip()}: the value {value!r} is not valid YAML ({_yaml_problem(err)}); quote it") from err
    check_keys(out, "--set")
    return out


def builtin_recipes() -> dict[str, Path]:
    """Recipe name → path for the recipes shipped in the package (``graftlm/recipes``)."""
    packaged = Path(str(resources.files("graftlm"))) / "recipes"
    return {p.stem: p for p in sorted(packaged.glob("*.yaml"))}


def resolve_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.is_file():
            raise ValueError(f"recipe file {name_or_path!r} does not exist")
        return path
    known = builtin_recipes()
    if name_or_path in known:
        return known[name_or_path]
    hint = did_you_mean(name_or_path, known, listing="known recipes", cutoff=0.5)
    raise ValueError(f"no recipe named {name_or_path!r}: {hint}")


def load_recipe(name_or_path: str | os.PathLike, overrides: dict[str, Any] | list[str] | None = None) -> TrainConfig:
    """Read a recipe (a name from ``graftlm/recipes/`` or a YAML path), apply overrides, validate."""
    path = resolve_recipe(str(name_or_path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ValueError(f"recipe {path} is not UTF-8 text ({err}); is it a recipe file?") from err
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path} is not valid YAML: {_yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of key: value, got {type(data).__name__}")
    check_keys(data, str(path))
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    overrides = overrides or {}
    data.update(overrides)
    check_keys(data, "overrides")
    try:
        return TrainConfig.from_dict(data)
    except ValueError as err:
        key = next((k for k in data if f"{k!r}" in str(err)), None)
        where = "--set" if key in overrides else str(path)
        raise ValueError(f"{err} (in {where})") from err


def _yaml_problem(err: Exception) -> str:
    """``line L, column C: problem`` for a PyYAML error (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def smoke_config(cfg: TrainConfig) -> TrainConfig:
    """Tiny, fast variant of a recipe: same model kind and layer count, packaged text, 3 steps."""
    return cfg.replace(
        smoke=True, hidden_size=32, num_heads=2, batch_size=4, gradient_accumulation_steps=1,
        tokenizer="byte", backbone=("tiny-opt" if cfg.model == "sllm" else None), vae_path=None,
        data_path=cfg.data_path if str(cfg.data_path or "").startswith("packaged:") else "packaged:pydoc",
        data_format="auto", max_tokens=32, max_sentences=8, max_steps=3, warmup_steps=1, cosine_steps=2,
        lr=1e-3, save_every=2, eval_every=3, eval_size=8, eval_batches=1, log_every=1,
        # a paper recipe's held-out fraction (0.001) is sized for a huge corpus: on packaged text it can
        # put no document aside at all, which the smoke run would then refuse
        heldout_fraction=max(cfg.heldout_fraction, 0.05),
        num_workers=0, shuffle_buffer=16, bucket_pool=2, mixed_precision="no", tensorboard=False,
        # no backbone to copy layers from, and a step count instead of a time budget
        decoder_from_backbone=None, max_minutes=None,
    )
