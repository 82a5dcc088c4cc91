"""Training recipes: one flat YAML file per run, validated against :class:`TrainConfig`.

No ``__base__`` includes: every recipe states all it changes from the defaults below, so a recipe
can be read on its own. ``graftlm train RECIPE --set key=value`` overrides single fields (values
are parsed as YAML: ``--set max_steps=10 --set mixed_precision=bf16``). An unknown key — in the
file or in ``--set`` — is an error that names it and suggests the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
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
        _choice("model", self.model, ("svae", "sllm"))
        _choice("data_format", self.data_format, ("auto", "text", "jsonl", "parquet", "hf"))
        _choice("mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))
        _choice("freeze", self.freeze, ("none", "vae", "backbone"))
        _choice("vae_preset", self.vae_preset, ("official", "modern"))
        _choice("attention", self.attention, ("causal", "bidirectional"))
        for k in ("batch_size", "gradient_accumulation_steps", "max_steps", "max_tokens", "max_sentences",
                  "save_every", "log_every", "eval_every", "eval_size", "eval_batches", "bucket_pool",
                  "shuffle_buffer", "prefetch_factor"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"recipe key {k!r} must be >= 1, got {getattr(self, k)}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.model == "sllm" and not self.backbone:
            raise ValueError("an sllm recipe needs `backbone` (e.g. facebook/opt-125m or smollm2)")
        self.peak_lr()
        return self


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
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
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
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of key: value, got {type(data).__name__}")
    check_keys(data, str(path))
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    data.update(overrides or {})
    check_keys(data, "overrides")
    return TrainConfig(**data).validate()


def smoke_config(cfg: TrainConfig) -> TrainConfig:
    """Tiny, fast variant of a recipe: same model kind and layer count, packaged text, 3 steps."""
    return dataclasses.replace(
        cfg, smoke=True, hidden_size=32, num_heads=2, batch_size=4, gradient_accumulation_steps=1,
        tokenizer="byte", backbone=("tiny-opt" if cfg.model == "sllm" else None), vae_path=None,
        data_path=cfg.data_path if str(cfg.data_path or "").startswith("packaged:") else "packaged:pydoc",
        data_format="auto", max_tokens=32, max_sentences=8, max_steps=3, warmup_steps=1, cosine_steps=2,
        lr=1e-3, save_every=2, eval_every=3, eval_size=8, eval_batches=1, log_every=1,
        num_workers=0, shuffle_buffer=16, bucket_pool=2, mixed_precision="no", tensorboard=False,
    ).validate()
