"""The authors' configs → `SentenceVAEConfig`: their YAML files (``__base__: !include`` resolved),
their config dicts (YAML content or their constructors' keyword arguments), or a ready config.

Their YAML states only what is not taken from the OPT model at ``ref_model_dir``: width, vocabulary,
heads, dropout and token ids come from that model's ``config.json`` (``tools/train/*.py``). Give it
as ``backbone_config`` (a transformers config, a dict, or a folder / config.json path); without it
``ref_model_dir`` is read when it exists, else the error says what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from graftlm.vae.config import SentenceVAEConfig

# their key -> ours; learnable_add is mapped to fusion separately
_RENAMES = {
    "hidden_size": "hidden_size", "vocab_size": "vocab_size", "num_attention_heads": "num_heads",
    "num_hidden_layers": "num_layers", "max_seq_len": "max_tokens", "dropout": "dropout",
    "word_embed_proj_dim": "embed_dim", "bos_id": "bos_token_id", "pad_id": "pad_token_id", "end_id": "eos_token_id",
}
# keys of their YAML / constructors that only concern training or loading, not the architecture
_IGNORED = {
    "device", "dtype", "load_ref_model", "ref_model_dir", "ref_model_dtype", "finetune_embedding", "model_path",
    "batch_size", "base_lr", "resume_train", "dataloader_num_workers", "dataloader_prefetch_factor",
    "save_checkpoint_iters", "max_iters", "warmup_iters", "val_iters", "cosineannealinglr_tmax", "max_keep_ckpts",
    "llm", "finetune_svae", "max_sen_num", "max_sentence_num", "llm_ref_model_dir", "llm_ref_model_dtype",
    "llm_finetune_layers",
}
_FROM_BACKBONE = {"hidden_size": "hidden_size", "vocab_size": "vocab_size", "num_attention_heads": "num_attention_heads",
                  "dropout": "dropout", "bos_id": "bos_token_id", "pad_id": "pad_token_id", "end_id": "eos_token_id"}
_REQUIRED = ("hidden_size", "vocab_size", "num_attention_heads")


class _IncludeLoader(yaml.SafeLoader):
    """SafeLoader + their ``!include relative/path.yaml`` tag (pyyaml-include's syntax)."""


def _include(loader: _IncludeLoader, node: yaml.Node) -> Any:
    target = (Path(loader.name).parent / loader.construct_scalar(node)).resolve()
    stack = getattr(loader, "_graftlm_stack", ())
    if target in stack:
        raise ValueError(f"!include cycle: {' -> '.join(map(str, (*stack, target)))}")
    return _read_yaml(target, (*stack, target))


_IncludeLoader.add_constructor("!include", _include)


def _read_yaml(path: Path, stack: tuple[Path, ...] = ()) -> Any:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist" + (f" (included from {stack[-2]})" if len(stack) > 1 else ""))
    with open(path, encoding="utf-8") as f:
        loader = _IncludeLoader(f)
        loader._graftlm_stack = stack or (path.resolve(),)  # type: ignore[attr-defined]
        try:
            return loader.get_single_data()
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {err}") from err
        finally:
            loader.dispose()


def _merge(base: dict, update: dict) -> dict:
    """Their ``recursive_update``: nested dicts merge, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def load_official_yaml(path: str | Path) -> dict[str, Any]:
    """Their YAML as one dict: ``!include`` read relative to the including file, then every
    ``__base__`` merged under the keys that include it (theirs win), as their ``load_yaml`` does."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a mapping of config keys")
    while "__base__" in data:
        base = data.pop("__base__")
        if not isinstance(base, dict):
            raise ValueError(f"{path}: __base__ must be an !include of a YAML mapping, got {type(base).__name__}")
        data = _merge(base, data)
    return data


def _backbone_values(backbone_config: Any) -> dict[str, Any]:
    if backbone_config is None:
        return {}
    if isinstance(backbone_config, (str, Path)):
        path = Path(backbone_config)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"backbone_config {backbone_config}: no config.json there")
        backbone_config = json.loads(path.read_text())
    if not isinstance(backbone_config, dict):
        if not hasattr(backbone_config, "to_dict"):
            raise TypeError(f"backbone_config must be a transformers config, a dict or a path, got {type(backbone_config).__name__}")
        backbone_config = backbone_config.to_dict()
    return backbone_config


def _flatten(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(SVAE keys, is_sllm): the SLLM YAML's ``svae:`` block or ``svae_``-prefixed kwargs."""
    data = dict(data)
    sllm = "svae" in data or any(k.startswith("svae_") for k in data)
    if isinstance(data.get("svae"), dict):
        svae = data.pop("svae")
        data = {**data, **svae}
    data = {k.removeprefix("svae_"): v for k, v in data.items()}
    for theirs in ("max_sen_len", "max_sentence_len"):
        if theirs in data:
            data["max_seq_len"] = data.pop(theirs)
    return data, sllm


def official_config(config: Any, *, backbone_config: Any = None, **overrides: Any) -> SentenceVAEConfig:
    """A `SentenceVAEConfig` (official preset) from their YAML path, their dict, or a config.

    ``backbone_config``: the OPT config their scripts read from ``ref_model_dir`` (width, vocab,
    heads, dropout, token ids; for SLLM configs also ``word_embed_proj_dim``: their SLLM script
    passes it, their SVAE script does not). ``overrides``: graftlm field names, applied last.
    """
    if isinstance(config, SentenceVAEConfig):
        return config.replace(**overrides) if overrides else config
    if isinstance(config, (str, Path)):
        config = load_official_yaml(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be their YAML path, their config dict or a SentenceVAEConfig, got {type(config).__name__}")
    data, sllm = _flatten(config)
    unknown = sorted(k for k in data if k not in _RENAMES and k not in _IGNORED and k != "learnable_add")
    if unknown:
        raise ValueError(f"unknown key(s) in the authors' config: {', '.join(unknown)}; known: "
                         f"{', '.join(sorted({*_RENAMES, 'learnable_add'}))} (+ training keys, ignored)")
    backbone = _backbone_values(backbone_config)
    if not backbone and isinstance(data.get("ref_model_dir"), str) and Path(data["ref_model_dir"], "config.json").is_file():
        backbone = _backbone_values(data["ref_model_dir"])
    for theirs, field in _FROM_BACKBONE.items():
        if theirs not in data and field in backbone and backbone[field] is not None:
            data[theirs] = backbone[field]
    if sllm and "word_embed_proj_dim" not in data and backbone.get("word_embed_proj_dim"):
        data["word_embed_proj_dim"] = backbone["word_embed_proj_dim"]
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing and not all(_RENAMES[k] in overrides for k in missing):
        raise ValueError(
            f"the authors' config lacks {', '.join(missing)}: their scripts read these from the OPT model at "
            f"ref_model_dir={data.get('ref_model_dir')!r}. Pass backbone_config= (that model's config, or its "
            f"folder / config.json), or give {', '.join(_RENAMES[k] + '=' for k in missing)} yourself"
        )
    kwargs = {_RENAMES[k]: v for k, v in data.items() if k in _RENAMES and v is not None}
    # their constructors' default is learnable_add=True; every shipped YAML sets false
    kwargs["fusion"] = "weighted" if data.get("learnable_add", True) else "sum"
    kwargs.update(overrides)
    vocab, hidden = kwargs.pop("vocab_size"), kwargs.pop("hidden_size")
    heads, layers = kwargs.pop("num_heads"), kwargs.pop("num_layers", 1)
    kwargs.setdefault("max_tokens", 512)  # their SentenceVAE's default max_seq_len
    return SentenceVAEConfig.official(vocab_size=vocab, hidden_size=hidden, num_heads=heads, num_layers=layers, **kwargs)


def check_official_architecture(config: SentenceVAEConfig) -> None:
    """Their weights only mean something in their architecture: refuse a config that differs."""
    ref = SentenceVAEConfig.official(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                                     num_heads=config.num_heads)
    fields = ("norm_first", "position", "activation", "tie_word_embeddings", "encoder_bos", "ffn_size")
    wrong = [f"{f}={getattr(config, f)!r} (theirs: {getattr(ref, f)!r})" for f in fields if getattr(config, f) != getattr(ref, f)]
    if config.fusion not in ("sum", "weighted"):
        wrong.append(f"fusion={config.fusion!r} (theirs: 'sum' or 'weighted' = learnable_add)")
    if wrong:
        raise ValueError("this SentenceVAEConfig is not the authors' architecture: " + "; ".join(wrong)
                         + ". Use SentenceVAEConfig.official(...) or pass their YAML / config dict")
