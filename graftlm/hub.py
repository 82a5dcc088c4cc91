"""Fail fast on a tokenizer/model reference that cannot load, before transformers retries the hub.

A reference is a local folder or a model-hub id (``org/name``). A mistyped local path, an id the
hub would reject, or — offline — an id that is not in the local cache is an error naming it at
once (transformers would otherwise retry the hub for about a minute, then raise an OSError).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import validate_repo_id

_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(name: str) -> bool:
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")
            or Path(name).suffix in (".json", ".model", ".gguf", ".safetensors", ".bin"))


def _in_cache(repo_id: str) -> bool:
    return any(isinstance(try_to_load_from_cache(repo_id, f), str)
               for f in ("config.json", "tokenizer_config.json", "tokenizer.json"))


def check_pretrained(name: str, what: str, key: str | None = None) -> None:
    """Raise ValueError when ``name`` (a ``what``: "tokenizer", "backbone"; ``key`` the recipe key that
    set it) is neither an existing local folder/file nor a loadable hub id."""
    where = f" (recipe key {key!r})" if key else ""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what}{where} must be a local path or a model-hub id, got {name!r}")
    path = Path(name).expanduser()
    if path.exists():
        return
    if _looks_like_path(name):
        raise ValueError(f"{what} path {name!r}{where} does not exist; check the spelling (absolute path: {path.absolute()})")
    try:
        validate_repo_id(name)
    except Exception as err:
        raise ValueError(f"{what} {name!r}{where} is neither an existing local path nor a valid model-hub id ({err})") from err
    if hub_offline() and not _in_cache(name):
        raise ValueError(
            f"{what} {name!r}{where} is not a local path and not in the local Hugging Face cache, and the hub is "
            "offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE): fix the name, pass a local folder, or download it first"
        )
