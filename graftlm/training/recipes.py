"""Training recipes: one flat YAML file per run, validated against :class:`TrainConfig`.

No ``__base__`` includes: every recipe states all it changes from the defaults below, so a recipe
can be read on its own. ``graftlm train RECIPE --set key=value`` overrides single fields (values
are parsed as YAML: ``--set max_steps=10 --set mixed_precision=bf16``). An unknown key — in the
file or in ``--set`` — is an error that names it and suggests the closest valid keys.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    # what to train
    name: str = "run"
    model: str = "svae"  # "svae" | "sllm"
    # data (see graftlm.training.data.read_corpus)
    data_path: str | None = None  # file, folder, HF dataset dir, or "packaged:pydoc" / "packaged:kjv"
    data_format: str = "auto"  # auto | text | jsonl | parquet | hf
    text_field: str = "content"  # JSON-lines / parquet / HF column holding the text (WanJuan: content)
    encoding: str | None = None  # text / JSON-lines files: None = strict UTF-8 (a file that is not is an error)
    heldout_fraction: float = 0.01  # documents hashed into the held-out split
    eval_size: int = 1000  # held-out segments (SVAE) or paragraphs (SLLM) evaluated
    max_tokens: int = 64  # tokens per segment (segmenter budget)
    max_sentences: int = 64  # segments per paragraph window (SLLM)
    num_workers: int = 0
    prefetch_factor: int = 2
    shuffle_buffer: int = 1000  # documents
    bucket_pool: int = 64  # SVAE: batches' worth of segments sorted by length together
    # tokenizer / model
    tokenizer: str = "byte"  # "byte" (ByteTokenizer) | "smollm2" | an HF tokenizer name or path
    hidden_size: int = 768
    num_heads: int = 12
    num_layers: int = 1
    vae_preset: str = "official"  # official (paper architecture) | modern (SentenceVAEConfig defaults)
    dropout: float = 0.1
    vae_path: str | None = None  # start from a saved SentenceVAE (save_pretrained folder)
    init_embeddings: bool = True  # SVAE embeddings from the backbone's (when there is one)
    backbone: str | None = None  # "smollm2" | HF name/path (facebook/opt-125m ...)
    freeze: str = "none"  # none | vae | backbone
    train_layers: int | None = None  # keep only the first and last k backbone layers trainable
    termination_gamma: float = 2.0
    attention: str = "causal"  # causal | bidirectional (the authors' leak, research only: graftlm.sllm.leak)
    segment_rule: str = "semantic"  # semantic | paper (RegexSegmenter rule)
    min_tokens: int | None = None  # merge clauses shorter than this many tokens (None: no merging)
    vae_loss: str | None = None  # focal | ce (None: the preset's, focal)
    vae_encoder: str = "transformer"  # transformer | positional (order-preserving; modern preset only)
    positional_dim: int = 64  # positional encoder: per-position projection width
    vae_conditioning: str = "cross"  # cross | prefix (memory_slots decoder positions ahead of bos; modern only)
    memory_slots: int = 1  # prefix conditioning: slots per sentence vector
    warm_start: bool = False  # SVAE: the first vector = normed mean of the (backbone's) embeddings
    decoder_from_backbone: int | None = None  # SVAE: Llama decoder = the backbone's last k layers + norm + head
    train_head: str = "full"  # full | sampled (training only; every reported figure uses the full softmax)
    head_negatives: int = 4096  # sampled head: ids drawn from the whole vocabulary per batch
    freeze_embeddings: bool = False  # the VAE's token embeddings (from the backbone's) stay frozen
    lora_rank: int | None = None  # SLLM: LoRA of this rank on the backbone body (its other weights freeze)
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"  # comma-separated module names for LoRA
    distill_weight: float = 0.0  # SLLM: weight of KL(backbone teacher || sentence decoder) per token
    distill_topk: int = 32  # teacher tokens kept per position for the KL
    # optimisation
    batch_size: int = 128  # per process: segments (SVAE) or paragraph windows (SLLM)
    gradient_accumulation_steps: int = 1
    base_lr: float | None = 1e-7  # paper: lr = batch_size × base_lr
    lr: float | None = None  # absolute peak lr; overrides base_lr when set
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    warmup_steps: int = 5000
    warmup_start_factor: float = 1e-3
    cosine_steps: int = 20000
    min_lr_ratio: float = 0.0  # lr held at min_lr_ratio × lr after the cosine period
    max_steps: int = 300000
    max_minutes: float | None = None  # training-time budget: steps (and the cosine) re-planned to fit it
    ema_momentum: float | None = 2e-4  # null disables EMA
    mixed_precision: str = "no"  # no | fp16 | bf16
    seed: int = 0
    # bookkeeping
    output_dir: str = "runs/{name}"
    save_every: int = 5000
    keep_last: int = 2
    log_every: int = 10
    eval_every: int = 5000
    eval_batches: int = 8  # batches of held-out data at each periodic eval (the final eval uses eval_size)
    tensorboard: bool = False
    # smoke overrides (--smoke): tiny model, few steps, packaged text
    smoke: bool = False

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

    def validate(self) -> "TrainConfig":
        """Check every key's type and range (coercing ints written as 3.0 and floats written as
        "1e-7", which YAML reads as a string); ValueError naming the key otherwise."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, _typed(f.name, getattr(self, f.name), str(f.type)))
        _choice("model", self.model, ("svae", "sllm"))
        _choice("data_format", self.data_format, ("auto", "text", "jsonl", "parquet", "hf"))
        _choice("mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))
        _choice("freeze", self.freeze, ("none", "vae", "backbone"))
        _choice("vae_preset", self.vae_preset, ("official", "modern"))
        _choice("attention", self.attention, ("causal", "bidirectional"))
        _choice("segment_rule", self.segment_rule, ("semantic", "paper"))
        _choice("vae_encoder", self.vae_encoder, ("transformer", "positional"))
        _choice("vae_conditioning", self.vae_conditioning, ("cross", "prefix"))
        _choice("train_head", self.train_head, ("full", "sampled"))
        if self.vae_preset == "official" and (self.vae_encoder != "transformer" or self.vae_conditioning != "cross"):
            raise ValueError("recipe keys 'vae_encoder'/'vae_conditioning' other than transformer/cross need "
                             "vae_preset: modern (the official preset is the authors' architecture)")
        if self.decoder_from_backbone is not None and (self.decoder_from_backbone < 1 or self.vae_preset != "modern"
                                                       or self.vae_conditioning != "prefix" or self.model != "svae"
                                                       or self.backbone != "smollm2" or not self.init_embeddings):
            raise ValueError("recipe key 'decoder_from_backbone' (k >= 1) is a SentenceVAE warm start: it needs "
                             "model: svae, backbone: smollm2, init_embeddings: true, vae_preset: modern and "
                             "vae_conditioning: prefix")
        if self.max_minutes is not None:
            _positive("max_minutes", self.max_minutes, "the training-time budget in minutes (null: no budget)")
        if self.train_head == "sampled" and self.distill_weight > 0:
            raise ValueError("recipe key 'train_head: sampled' cannot be combined with distill_weight > 0 "
                             "(distillation needs the full logits)")
        if self.vae_loss is not None:
            _choice("vae_loss", self.vae_loss, ("focal", "ce"))
        if self.min_tokens is not None and not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"recipe key 'min_tokens' must be between 1 and max_tokens={self.max_tokens} or null, "
                             f"got {self.min_tokens}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"recipe key 'lora_rank' must be >= 1 or null (no LoRA), got {self.lora_rank}")
        if self.distill_weight < 0 or self.distill_topk < 1:
            raise ValueError(f"recipe keys 'distill_weight' (>= 0) / 'distill_topk' (>= 1) out of range: "
                             f"{self.distill_weight}, {self.distill_topk}")
        for k in ("batch_size", "gradient_accumulation_steps", "max_steps", "max_tokens", "max_sentences",
                  "save_every", "log_every", "eval_every", "eval_size", "eval_batches", "bucket_pool",
                  "shuffle_buffer", "prefetch_factor", "positional_dim", "memory_slots", "head_negatives"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"recipe key {k!r} must be >= 1, got {getattr(self, k)}")
        for k in ("warmup_steps", "num_workers", "keep_last"):
            if getattr(self, k) < 0:
                raise ValueError(f"recipe key {k!r} must be >= 0, got {getattr(self, k)}")
        if self.train_layers is not None and self.train_layers < 0:
            raise ValueError(f"recipe key 'train_layers' must be >= 0 or null, got {self.train_layers}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"recipe key 'heldout_fraction' must be in [0, 1), got {self.heldout_fraction}")
        _positive("max_grad_norm", self.max_grad_norm, "gradients are clipped to this norm; 1.0 is the usual value "
                  "(a value <= 0 would turn clipping into no learning or gradient ascent)")
        for k in ("lr", "base_lr"):
            if getattr(self, k) is not None:
                _positive(k, getattr(self, k), "a learning rate")
        if not 0.0 < self.warmup_start_factor <= 1.0:
            raise ValueError(f"recipe key 'warmup_start_factor' must be in (0, 1], got {self.warmup_start_factor}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"recipe key 'min_lr_ratio' must be in [0, 1], got {self.min_lr_ratio}")
        if self.ema_momentum is not None and not 0.0 < self.ema_momentum < 1.0:
            raise ValueError(f"recipe key 'ema_momentum' must be in (0, 1) or null (no EMA), got {self.ema_momentum}")
        for k in ("weight_decay", "termination_gamma"):
            if getattr(self, k) < 0:
                raise ValueError(f"recipe key {k!r} must be >= 0, got {getattr(self, k)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"recipe key 'dropout' must be in [0, 1), got {self.dropout}")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"recipe key 'encoding' is {self.encoding!r}, which Python does not know; "
                                 "use e.g. utf-8, latin-1, cp1252 (or null for strict UTF-8)") from None
        if self.model == "sllm" and not self.backbone:
            raise ValueError("an sllm recipe needs `backbone` (e.g. facebook/opt-125m or smollm2)")
        self.peak_lr()
        return self


def _typed(key: str, value: Any, annotation: str) -> Any:
    """``value`` as the type ``annotation`` names ("int", "float | None", ...), or ValueError naming ``key``."""
    kinds = [a.strip() for a in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"recipe key {key!r} must be set (got null); its type is {annotation}")
    kind = kinds[0]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"recipe key {key!r} must be true or false, got {value!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ValueError(f"recipe key {key!r} must be a string, got {value!r} ({type(value).__name__}); quote it")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"recipe key {key!r} must be an integer, got {value!r}")
    if kind == "float":
        number = value
        if isinstance(value, str):  # YAML 1.1 reads 1e-7 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError(f"recipe key {key!r} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ValueError(f"recipe key {key!r} must be a finite number, got {value!r}")
        return float(number)
    return value


def _positive(key: str, value: float, what: str) -> None:
    if not value > 0:
        raise ValueError(f"recipe key {key!r} must be > 0, got {value}: {what}")


def _choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"recipe key {key!r} is {value!r}; expected one of {', '.join(options)}")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def check_keys(keys: Any, source: str) -> None:
    """Raise ValueError for the first unknown key, naming close matches."""
    for key in keys:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else \
                f"; valid keys: {', '.join(sorted(FIELDS))}"
            raise ValueError(f"unknown recipe key {key!r} in {source}{hint}")


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
    """Recipe name → path for the recipes shipped in ``recipes/`` (repo) and ``graftlm/recipes``."""
    found: dict[str, Path] = {}
    repo = Path(__file__).resolve().parents[2] / "recipes"
    packaged = Path(str(resources.files("graftlm"))) / "recipes"
    for folder in (packaged, repo):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.yaml"))})
    return found


def resolve_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.is_file():
            raise ValueError(f"recipe file {name_or_path!r} does not exist")
        return path
    known = builtin_recipes()
    if name_or_path in known:
        return known[name_or_path]
    close = difflib.get_close_matches(name_or_path, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known recipes: {', '.join(known) or 'none'}"
    raise ValueError(f"no recipe named {name_or_path!r}: {hint}")


def load_recipe(name_or_path: str | os.PathLike, overrides: dict[str, Any] | list[str] | None = None) -> TrainConfig:
    """Read a recipe (a name from ``recipes/`` or a YAML path), apply overrides, validate."""
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
        return TrainConfig(**data).validate()
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
    return dataclasses.replace(
        cfg, smoke=True, hidden_size=32, num_heads=2, batch_size=4, gradient_accumulation_steps=1,
        tokenizer="byte", backbone=("tiny-opt" if cfg.model == "sllm" else None), vae_path=None,
        data_path=cfg.data_path if str(cfg.data_path or "").startswith("packaged:") else "packaged:pydoc",
        data_format="auto", max_tokens=32, max_sentences=8, max_steps=3, warmup_steps=1, cosine_steps=2,
        lr=1e-3, save_every=2, eval_every=3, eval_size=8, eval_batches=1, log_every=1,
        # a paper recipe's held-out fraction (0.001) is sized for a huge corpus: on packaged text it can
        # put no document aside at all, which the smoke run would then refuse
        heldout_fraction=max(cfg.heldout_fraction, 0.05),
        num_workers=0, shuffle_buffer=16, bucket_pool=2, mixed_precision="no", tensorboard=False,
    ).validate()
