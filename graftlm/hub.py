"""The model hub: fail fast on a tokenizer/model reference that cannot load (before transformers
retries the hub), resolve a hub id to a local snapshot (`resolve_pretrained`), upload a save
(`PushToHubMixin`).

A reference is a local folder or a model-hub id (``org/name``). A mistyped local path, an id the
hub would reject, or — offline — an id that is not in the local cache is an error naming it at
once (transformers would otherwise retry the hub for about a minute, then raise an OSError).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

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


class MissingFolder(FileNotFoundError, ValueError):
    """A local model folder that does not exist (both: callers catch either)."""


def resolve_pretrained(name_or_path: str | os.PathLike, what: str, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, token: str | bool | None = None) -> Path:
    """A local folder as is, or a model-hub id downloaded (or, offline, found in the local cache) with
    ``huggingface_hub.snapshot_download``; ValueError naming ``name_or_path`` when it is neither."""
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{what}: {name} is a file; pass the folder save_pretrained wrote")
    if _looks_like_path(name):
        raise MissingFolder(f"{what} folder {name!r} does not exist (expected a folder written by save_pretrained); "
                            f"check the spelling (absolute path: {path.absolute()})")
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise ValueError(f"{what} {name!r} is neither an existing local folder nor a valid model-hub id ({err})") from err
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, token=token,
                                      local_files_only=hub_offline()))
    except Exception as err:  # hub errors (not found, offline and not cached, gated...) share no base class
        offline = " (the hub is offline: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE; download it first)" if hub_offline() else ""
        raise ValueError(f"{what} {name!r} is not a local folder and could not be fetched from the model hub"
                         f"{offline}: {type(err).__name__}: {err}") from err


class PushToHubMixin:
    """``push_to_hub(repo_id)`` for anything with ``save_pretrained(folder)``: saves into a temporary
    folder, creates the repository if needed and uploads the folder in one commit."""

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload with graftlm", private: bool | None = None,
                    token: str | None = None, revision: str | None = None, create_pr: bool = False,
                    **save_kwargs: Any) -> Any:
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="graftlm-push-") as tmp:
            folder = Path(tmp) / "model"
            self.save_pretrained(folder, **save_kwargs)  # type: ignore[attr-defined]
            repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            return api.upload_folder(repo_id=getattr(repo, "repo_id", repo_id), folder_path=str(folder),
                                     commit_message=commit_message, revision=revision, create_pr=create_pr,
                                     repo_type="model")
