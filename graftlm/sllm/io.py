"""Saving and loading a SentenceLLM: JSON + safetensors only (nothing is unpickled).

Layout of a directory:
    sllm_config.json     adapter, backbone info (reference and/or config), graft options
    sllm.safetensors     projections, termination head and body weights (see save_backbone)
    vae/                 SentenceVAE.save_pretrained
    tokenizer/           the tokenizer's own save_pretrained, when it has one
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import torch

from graftlm.sllm.model import SentenceLLM

CONFIG_NAME = "sllm_config.json"
WEIGHTS_NAME = "sllm.safetensors"
FORMAT = "graftlm-sentence-llm"
SAVE_MODES = ("reference", "weights")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def _tokenizer_kind(tokenizer: Any) -> str | None:
    from graftlm.tokenization import ByteTokenizer

    if tokenizer is None:
        return None
    if isinstance(tokenizer, ByteTokenizer):
        return "byte"
    return "saved" if hasattr(tokenizer, "save_pretrained") else None


def save_pretrained(sllm: SentenceLLM, directory: str | Path, save_backbone: str = "reference") -> None:
    """Save ``sllm`` to ``directory``.

    ``save_backbone="weights"``: every body weight is written (self-contained; the backbone is
    rebuilt from its saved config). ``"reference"``: the backbone is re-loaded from where it came
    from (``config._name_or_path`` or a ``"module:function"`` loader such as
    ``graftlm.backbones:load_smollm2``); only body parameters that train (requires_grad: LoRA,
    unfrozen layers) are written on top.
    """
    from safetensors.torch import save_file

    if save_backbone not in SAVE_MODES:
        raise ValueError(f"save_backbone must be one of {SAVE_MODES}, got {save_backbone!r}")
    reference = sllm.backbone_info.get("reference")
    if save_backbone == "reference" and not reference:
        raise ValueError("the backbone has no known source (config._name_or_path is empty); use save_backbone='weights'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainable = {name for name, p in sllm.named_parameters() if p.requires_grad}
    tensors = {}
    for name, tensor in sllm.state_dict().items():
        if name.startswith("vae."):
            continue
        if name.startswith("body.") and save_backbone == "reference" and name not in trainable:
            continue
        tensors[name] = tensor.detach().to("cpu").contiguous()
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": FORMAT})
    sllm.vae.save_pretrained(directory / "vae")
    kind = _tokenizer_kind(sllm.tokenizer)
    if kind == "saved":
        sllm.tokenizer.save_pretrained(str(directory / "tokenizer"))
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
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))


def _load_reference(reference: str) -> Any:
    if ":" in reference and not Path(reference).exists():
        module, _, func = reference.partition(":")
        loaded = getattr(importlib.import_module(module), func)()
        return loaded[0] if isinstance(loaded, tuple) else loaded
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(reference)


def _build_from_config(config_dict: dict[str, Any]) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

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
    from peft import LoraConfig

    names = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    return LoraConfig(**{k: v for k, v in options.items() if k in names})


def load(directory: str | Path, *, backbone: Any = None, device: str | torch.device | None = None) -> SentenceLLM:
    """Load a SentenceLLM saved with `SentenceLLM.save_pretrained`.

    ``backbone``: a fresh causal LM to graft instead of re-loading the saved reference.
    """
    from safetensors.torch import load_file

    from graftlm.plugins import list_adapters
    from graftlm.sllm.graft import graft
    from graftlm.vae import SentenceVAE

    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by SentenceLLM.save_pretrained")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a graftlm SentenceLLM config (format={config.get('format')!r})")
    info = config["backbone"]
    if backbone is None:
        if config["save_backbone"] == "weights":
            backbone = _build_from_config(info["config"])
        else:
            backbone = _load_reference(info["reference"])
    dtype = getattr(torch, config.get("dtype", "float32"))
    backbone = backbone.to(dtype)
    vae = SentenceVAE.from_pretrained(directory / "vae")
    tokenizer = None
    if config.get("tokenizer") == "byte":
        from graftlm.tokenization import ByteTokenizer

        tokenizer = ByteTokenizer()
    elif config.get("tokenizer") == "saved":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
    adapters = {e.adapter.name: e.adapter for e in list_adapters()}
    adapter = adapters.get(config["adapter"])
    if adapter is None:
        raise ValueError(f"adapter {config['adapter']!r} is not registered (installed adapters: {sorted(adapters)})")
    opts = config["graft"]
    sllm = graft(
        backbone, vae,
        freeze=opts.get("freeze") or "none",
        train_layers=opts.get("train_layers"),
        lora=_lora_config(opts.get("lora")),
        termination_gamma=config["termination_gamma"],
        termination_weight=config["termination_weight"],
        tokenizer=tokenizer,
        own_vocab=True,  # checked when it was grafted
        adapter=adapter,
        attention=opts.get("attention", "causal"),
    )
    state = load_file(str(directory / WEIGHTS_NAME))
    missing, unexpected = sllm.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("vae.")]
    if config["save_backbone"] == "reference":
        missing = [k for k in missing if not k.startswith("body.")]
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_NAME} does not fit the rebuilt model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if device is not None:
        sllm.to(device)
    return sllm
