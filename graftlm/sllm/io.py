"""Saving and loading a SentenceLLM: JSON + safetensors only (nothing is unpickled).

Layout of a directory:
    sllm_config.json     adapter, backbone info (reference and/or config), graft options
    sllm.safetensors     projections, termination head and body weights (see save_backbone)
    adapter_config.json  with LoRA: peft's own format, so ``PeftModel.from_pretrained(backbone, dir)``
    adapter_model.safetensors   reads the LoRA weights (keys named as in the whole causal LM)
    vae/                 SentenceVAE.save_pretrained
    tokenizer/           the tokenizer's own save_pretrained, when it has one
    README.md            model card

Saves are atomic (`graftlm.atomic`): a save that fails midway leaves the earlier one as it was.
Folders written before LoRA moved to peft's format (LoRA inside ``sllm.safetensors``) still load.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from peft import LoraConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from graftlm.atomic import atomic_folder, write_text
from graftlm.hub import check_pretrained, resolve_pretrained
from graftlm.model_card import sllm_card
from graftlm.plugins import list_adapters
from graftlm.safetensors_io import fit_problems, read_safetensors
from graftlm.sllm.graft import graft_into
from graftlm.tokenization import ByteTokenizer
from graftlm.validation import readable_error
from graftlm.vae import SentenceVAE

if TYPE_CHECKING:  # annotations only: the class imports this module for its mixin
    from graftlm.sllm.model import SentenceLLM

CONFIG_NAME = "sllm_config.json"
WEIGHTS_NAME = "sllm.safetensors"
FORMAT = "graftlm-sentence-llm"
SAVE_MODES = ("reference", "weights")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OWNED = (CONFIG_NAME, WEIGHTS_NAME, ADAPTER_CONFIG, ADAPTER_WEIGHTS, "vae", "tokenizer", "README.md")
_OUR_ADAPTER = re.compile(r"\.(lora_[A-Za-z_]+)\.default(?=\.|$)")  # peft's in-memory names carry the adapter name
_PEFT_ADAPTER = re.compile(r"\.(lora_[A-Za-z_]+)(?=\.|$)")


def _is_lora(name: str) -> bool:
    return name.startswith("body.") and ".lora_" in name


def _peft_key(name: str, prefix: str | None) -> str:
    """``body.layers.0.q_proj.lora_A.default.weight`` → ``base_model.model.<prefix>.layers.0.q_proj.lora_A.weight``."""
    inner = _OUR_ADAPTER.sub(r".\1", name.removeprefix("body."))
    return "base_model.model." + (f"{prefix}." if prefix else "") + inner


def _our_key(key: str, prefix: str | None, source: Path) -> str:
    inner = key.removeprefix("base_model.model.")
    lead = f"{prefix}." if prefix else ""
    if not key.startswith("base_model.model.") or not inner.startswith(lead):
        raise ValueError(f"{source}: LoRA key {key!r} is not under base_model.model.{lead}… (the backbone body); "
                         "was this adapter trained on a different backbone architecture?")
    return "body." + _PEFT_ADAPTER.sub(r".\1.default", inner.removeprefix(lead))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def _tokenizer_kind(tokenizer: Any) -> str | None:
    if tokenizer is None:
        return None
    if isinstance(tokenizer, ByteTokenizer):
        return "byte"
    return "saved" if hasattr(tokenizer, "save_pretrained") else None


def save_pretrained(sllm: SentenceLLM, directory: str | Path, save_backbone: str = "reference", *,
                    model_card: dict[str, Any] | None = None) -> None:
    """Save ``sllm`` to ``directory``.

    ``save_backbone="weights"``: every body weight is written (self-contained; the backbone is
    rebuilt from its saved config). ``"reference"``: the backbone is re-loaded from where it came
    from (``config._name_or_path`` or a ``"module:function"`` loader such as
    ``graftlm.backbones:load_smollm2``); only body parameters that train (requires_grad: LoRA,
    unfrozen layers) are written on top.
    """
    if save_backbone not in SAVE_MODES:
        raise ValueError(f"save_backbone must be one of {SAVE_MODES}, got {save_backbone!r}")
    reference = sllm.backbone_info.get("reference")
    if save_backbone == "reference" and not reference:
        raise ValueError("the backbone has no known source (config._name_or_path is empty); use save_backbone='weights'")
    trainable = {name for name, p in sllm.named_parameters() if p.requires_grad}
    tensors, lora = {}, {}
    prefix = sllm.backbone_info.get("body_prefix")
    for name, tensor in sllm.state_dict().items():
        if name.startswith("vae."):
            continue
        if _is_lora(name):
            lora[_peft_key(name, prefix)] = tensor.detach().to("cpu").contiguous()
            continue
        if name.startswith("body.") and save_backbone == "reference" and name not in trainable:
            continue
        tensors[name] = tensor.detach().to("cpu").contiguous()
    kind = _tokenizer_kind(sllm.tokenizer)
    config = {
        "format": FORMAT,
        "version": 1,
        "adapter": sllm.adapter.name,
        "save_backbone": save_backbone,
        "backbone": sllm.backbone_info,
        "graft": sllm.graft_options,
        "termination_gamma": sllm.termination_gamma,
        "termination_weight": sllm.termination_weight,
        "vae_hidden_size": sllm.vae_hidden_size,
        "body_hidden_size": sllm.body_hidden_size,
        "dtype": str(next(sllm.body.parameters()).dtype).removeprefix("torch."),
        "tokenizer": kind,
    }
    with atomic_folder(directory, owned=OWNED) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        if lora:
            lora_config = _lora_config(sllm.graft_options.get("lora"))
            lora_config.base_model_name_or_path = reference if reference and ":" not in reference else None
            lora_config.save_pretrained(str(tmp))
            save_file(lora, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        sllm.vae.save_pretrained(tmp / "vae")
        if kind == "saved":
            sllm.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
        write_text(tmp / "README.md", sllm_card(backbone=reference, adapter=sllm.adapter.name,
                                                vae_config=sllm.vae.config, graft=sllm.graft_options, info=model_card))


def _read_lora(directory: Path, prefix: str | None) -> dict[str, torch.Tensor]:
    """The peft-format LoRA weights of ``directory`` under our names ({} without an adapter file)."""
    if not (directory / ADAPTER_WEIGHTS).is_file():
        return {}
    state = read_safetensors(directory / ADAPTER_WEIGHTS, "LoRA adapter weights")
    return {_our_key(k, prefix, directory / ADAPTER_WEIGHTS): v for k, v in state.items()}


def _load_reference(reference: str) -> Any:
    if ":" in reference and not Path(reference).exists():
        module, _, func = reference.partition(":")
        try:
            loader = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"the saved backbone loader {reference!r} cannot be imported ({err}); pass backbone=...") from err
        loaded = loader()
        return loaded[0] if isinstance(loaded, tuple) else loaded
    check_pretrained(reference, "backbone", key="backbone.reference")
    return AutoModelForCausalLM.from_pretrained(reference)


def _build_from_config(config_dict: dict[str, Any]) -> Any:
    cfg = dict(config_dict)
    cfg.pop("quantization_config", None)
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ValueError("the saved backbone config has no model_type; cannot rebuild the backbone")
    config = AutoConfig.for_model(model_type, **cfg)
    return AutoModelForCausalLM.from_config(config)


def _lora_config(options: dict[str, Any]) -> Any:
    if not options:
        return None
    names = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    return LoraConfig(**{k: v for k, v in options.items() if k in names})


DTYPES = ("float32", "float16", "bfloat16", "float64")


class SavedConfig(BaseModel):
    """``sllm_config.json``: every field, its type and allowed values (`version` and the sizes are
    informative). Unknown fields are refused, naming the closest known one."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["graftlm-sentence-llm"]
    version: int = 1
    adapter: str
    save_backbone: Literal["reference", "weights"]
    backbone: dict[str, Any]
    graft: dict[str, Any]
    termination_gamma: Annotated[float, Field(strict=True, allow_inf_nan=False)]
    termination_weight: Annotated[float, Field(strict=True, allow_inf_nan=False)]
    vae_hidden_size: int | None = None
    body_hidden_size: int | None = None
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"
    tokenizer: Literal["byte", "saved"] | None = None

    @model_validator(mode="after")
    def _backbone_source(self) -> "SavedConfig":
        if self.save_backbone == "weights" and not isinstance(self.backbone.get("config"), dict):
            raise ValueError("field 'backbone.config' is missing, but save_backbone='weights' rebuilds the backbone from it")
        if self.save_backbone == "reference" and not self.backbone.get("reference"):
            raise ValueError("field 'backbone.reference' is empty; pass backbone=... to load()")
        return self


def read_config(path: Path) -> dict[str, Any]:
    """``sllm_config.json``, checked (`SavedConfig`): valid JSON, our format, every required field, no unknown one."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by SentenceLLM.save_pretrained")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the model with save_pretrained") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a graftlm SentenceLLM config (format={config.get('format')!r}, expected {FORMAT!r})")
    try:
        return SavedConfig(**config).model_dump()
    except ValidationError as err:
        missing = [str(e["loc"][0]) for e in err.errors() if e["type"] == "missing"]
        if missing:
            raise ValueError(f"{path} lacks the field(s) {missing}; it was not written by SentenceLLM.save_pretrained "
                             "or was edited") from None
        problem = readable_error(err, lambda key: f"field {key!r}", unknown="field", known=SavedConfig.model_fields)
        raise ValueError(f"{path}: {problem}") from None


def _check_width(backbone: Any, adapter: Any, config: dict[str, Any], path: Path) -> None:
    """The backbone's width must be the saved body_hidden_size (checked before grafting modifies it)."""
    saved = config.get("body_hidden_size")
    if saved is None:
        return
    try:
        width = int(adapter.hidden_size(backbone))
    except Exception:  # an adapter that only reads the stripped body: checked on the weights below
        return
    if width != int(saved):
        raise ValueError(
            f"the backbone has width {width} but {path} was saved with body_hidden_size={saved}: pass the backbone "
            "this SentenceLLM was trained on (same architecture and size)"
        )


def _check_state(sllm: SentenceLLM, state: dict[str, torch.Tensor], config: dict[str, Any], weights: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in sllm.state_dict().items()}

    def loaded_elsewhere(key: str) -> bool:  # the VAE loads from vae/, a referenced body from its source
        return key.startswith("vae.") or (config["save_backbone"] == "reference" and key.startswith("body."))

    parts = fit_problems(expected, state, optional=loaded_elsewhere, theirs="file", limit=5)
    if parts:
        raise ValueError(f"{weights} does not fit the rebuilt model: " + " | ".join(parts)
                         + " (a different backbone, VAE or LoRA config than the one saved?)")


def load(cls: type, directory: str | Path, *, backbone: Any = None, device: str | torch.device | None = None,
         **hub_kwargs: Any) -> Any:
    """Load a SentenceLLM saved with `SentenceLLM.save_pretrained`, as a ``cls`` (`SentenceLLM`).

    ``directory``: a folder or a model-hub id (``hub_kwargs``: ``revision``, ``cache_dir``, ``token``).
    ``backbone``: a fresh causal LM to graft instead of re-loading the saved reference.
    Every file is checked (config fields, safetensors integrity, widths and shapes) and an error
    names the file and the problem; nothing is unpickled.
    """
    directory = resolve_pretrained(directory, "SentenceLLM", **hub_kwargs)
    path = directory / CONFIG_NAME
    config = read_config(path)
    adapters = {e.adapter.name: e.adapter for e in list_adapters()}
    adapter = adapters.get(config["adapter"])
    if adapter is None:
        raise ValueError(f"{path}: adapter {config['adapter']!r} is not registered (installed adapters: {sorted(adapters)})")
    state = read_safetensors(directory / WEIGHTS_NAME, "SentenceLLM weights")
    state.update(_read_lora(directory, config["backbone"].get("body_prefix")))
    if config["graft"].get("lora") and not any(_is_lora(k) for k in state):
        raise ValueError(f"{path} was saved with LoRA, but neither {ADAPTER_WEIGHTS} nor {WEIGHTS_NAME} holds LoRA "
                         "weights: the folder is incomplete; re-save the model")
    vae = SentenceVAE.from_pretrained(directory / "vae")
    info = config["backbone"]
    if backbone is None:
        if config["save_backbone"] == "weights":
            backbone = _build_from_config(info["config"])
        else:
            backbone = _load_reference(info["reference"])
    _check_width(backbone, adapter, config, path)
    backbone = backbone.to(getattr(torch, config.get("dtype", "float32")))
    tokenizer = None
    if config.get("tokenizer") == "byte":
        tokenizer = ByteTokenizer()
    elif config.get("tokenizer") == "saved":
        if not (directory / "tokenizer").is_dir():
            raise ValueError(f"{path} says the tokenizer was saved, but {directory / 'tokenizer'} is missing")
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
    opts = config["graft"]
    sllm = graft_into(
        cls, backbone, vae,
        freeze=opts.get("freeze") or "none",
        train_layers=opts.get("train_layers"),
        lora=_lora_config(opts.get("lora")),
        termination_gamma=config["termination_gamma"],
        termination_weight=config["termination_weight"],
        tokenizer=tokenizer,
        own_vocab=True,  # checked when it was grafted
        adapter=adapter,
        **({"attention": opts["attention"]} if opts.get("attention") else {}),
    )
    for key in ("segmenter", "distill"):  # recorded by training, not by graft()
        if opts.get(key) is not None:
            sllm.graft_options[key] = opts[key]
    _check_state(sllm, state, config, directory / WEIGHTS_NAME)
    sllm.load_state_dict(state, strict=False)  # strict=False: the VAE (and a referenced body) load separately
    if device is not None:
        sllm.to(device)
    return sllm


class PretrainedMixin:
    """`SentenceLLM`'s save/load methods (the functions above)."""

    def save_pretrained(self, directory: Any, save_backbone: str = "reference", *,
                        model_card: dict[str, Any] | None = None) -> None:
        """Write config JSON + safetensors (LoRA in peft's format) + model card, atomically; see
        `graftlm.sllm.io.save_pretrained`."""
        save_pretrained(self, directory, save_backbone=save_backbone, model_card=model_card)

    @classmethod
    def from_pretrained(cls, directory: Any, **kwargs: Any) -> Any:
        """Load what `save_pretrained` wrote, from a folder or a model-hub id; same as `graftlm.load`
        (``backbone=``, ``device=``, ``revision=``, ``cache_dir=``, ``token=``)."""
        return load(cls, directory, **kwargs)
