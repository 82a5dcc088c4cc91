"""SentenceVAE folders whose frozen token embedding is stored once, in ``shared.safetensors``.

A VAE that uses a backbone's embedding matrix, frozen, as both its encoder and its decoder token
embedding (and tied output head) would store it twice in ``model.safetensors`` (49152 × 576 fp32 =
113 MB for SmolLM2), and once more in a SentenceLLM's copy of the VAE. `save_vae` writes it once
to ``shared.safetensors`` (its metadata lists the keys it stands for; `add_shared` fills them in
when `SentenceVAE.from_pretrained` reads the folder), and can hard-link the file of another folder
saved this way instead of writing a second copy (a copy where the file system has no hard links).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from graftlm.safetensors_io import read_safetensors
from graftlm.atomic import atomic_folder
from graftlm.vae.files import CONFIG_NAME, OWNED, SHARED_NAME, TIED_KEY, WEIGHTS_NAME

EMBEDDING_KEYS = ("encoder.embedding.embed.weight", "decoder.embedding.embed.weight")
SHARED_TENSOR = "token_embedding"


def _state_without_shared(vae: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    state = {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}
    if vae.config.tie_word_embeddings:
        state.pop(TIED_KEY, None)
    enc, dec = (state.get(k) for k in EMBEDDING_KEYS)
    if enc is None or dec is None or enc.shape != dec.shape or not torch.equal(enc, dec):
        return state, None  # not one shared matrix: nothing to store once
    for k in EMBEDDING_KEYS:
        state.pop(k)
    return state, enc


def _same_tensor(path: Path, tensor: torch.Tensor) -> bool:
    try:
        with safe_open(str(path), "pt") as f:
            return SHARED_TENSOR in f.keys() and torch.equal(f.get_tensor(SHARED_TENSOR), tensor)
    except (OSError, RuntimeError, ValueError):
        return False


def save_vae(vae: Any, directory: str | os.PathLike, *, share_with: str | os.PathLike | None = None) -> str:
    """Write ``vae`` like `SentenceVAE.save_pretrained`, its frozen embedding once in
    ``shared.safetensors``; with ``share_with`` (another VAE folder saved this way) holding the
    same embedding, that folder's file is hard-linked. Returns how the embedding was stored:
    "linked", "copied" (no hard links here), "own" or "inline" (encoder and decoder differ)."""
    state, shared = _state_without_shared(vae)
    with atomic_folder(directory, owned=OWNED) as tmp:
        target = tmp / SHARED_NAME
        how = "inline"
        if shared is not None:
            source = Path(share_with) / SHARED_NAME if share_with is not None else None
            if source is not None and source.is_file() and _same_tensor(source, shared):
                try:
                    os.link(source, target)
                    how = "linked"
                except OSError:
                    shutil.copyfile(source, target)
                    how = "copied"
            else:
                save_file({SHARED_TENSOR: shared}, str(target),
                          metadata={"format": "pt", SHARED_TENSOR: ",".join(EMBEDDING_KEYS)})
                how = "own"
        vae.config.to_json_file(tmp / CONFIG_NAME)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "graftlm": "SentenceVAE"})
    return how


def add_shared(directory: Path, state: dict[str, torch.Tensor]) -> None:
    """Fill in ``state`` the keys that ``directory``'s ``shared.safetensors`` stands for (if any)."""
    path = Path(directory) / SHARED_NAME
    if path.is_file():
        _add_shared(read_safetensors(path, "SentenceVAE shared weights"), _metadata(path), state)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _add_shared(shared: dict[str, torch.Tensor], meta: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """Fill in the keys a shared tensor stands for: its metadata entry lists them, comma-separated
    (its own name when there is no entry)."""
    for name, tensor in shared.items():
        for key in filter(None, meta.get(name, name).split(",")):
            state.setdefault(key, tensor)
