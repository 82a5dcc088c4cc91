"""Frozen weights stored once per demo run folder.

The demo's SentenceVAE uses the backbone's embedding matrix, frozen, as both its encoder and its
decoder token embedding (and tied output head): 49152 × 576 fp32 = 113 MB for SmolLM2, stored
twice in a plain ``model.safetensors`` and once more in the SentenceLLM's copy of the VAE. Here
it goes to ``shared.safetensors`` once (its metadata lists the keys it stands for, which
`SentenceVAE.from_pretrained` fills in), and the SentenceLLM's VAE folder holds a hard link to
the SVAE's file instead of a second copy (a copy only where the file system has no hard links).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

SHARED_NAME = "shared.safetensors"
WEIGHTS_NAME = "model.safetensors"
EMBEDDING_KEYS = ("encoder.embedding.embed.weight", "decoder.embedding.embed.weight")
SHARED_TENSOR = "token_embedding"


def _state_without_shared(vae: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    from graftlm.vae.checkpoint import TIED_KEY

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
    from safetensors import safe_open

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
    from safetensors.torch import save_file

    from graftlm.atomic import atomic_folder
    from graftlm.vae.checkpoint import OWNED

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
        vae.config.to_json_file(tmp / "config.json")
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "graftlm": "SentenceVAE"})
    return how


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes used by the files under ``path``, each hard-linked file counted once (like ``du``)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
