"""SentenceVAE checkpoints: our own format (config.json + model.safetensors) and the authors' .pth.

No pickle is ever executed: safetensors for our files; theirs are read by `graftlm.vae.official`
(a restricted reader that imports nothing the file names).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from graftlm.atomic import atomic_folder, write_text
from graftlm.hub import resolve_pretrained
from graftlm.model_card import vae_card
from graftlm.vae.config import SentenceVAEConfig

if TYPE_CHECKING:
    from graftlm.vae.model import SentenceVAE

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
SHARED_NAME = "shared.safetensors"  # optional: tensors stored once for several keys (graftlm.demo.storage)
OWNED = (CONFIG_NAME, WEIGHTS_NAME, SHARED_NAME, CARD_NAME)  # a save replaces these, keeps other files
TIED_KEY = "decoder.lm_head.weight"  # the same tensor as decoder.embedding.embed.weight when tied


def _expected_state(model: "SentenceVAE") -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop(TIED_KEY, None)
    return state


def save_pretrained(model: "SentenceVAE", directory: str | Path, *, model_card: dict[str, Any] | None = None) -> None:
    """Write ``config.json``, ``model.safetensors`` (a tied head is stored once) and a ``README.md``
    model card (``model_card``: optional ``data`` / ``evaluation`` / ``notes``, see
    `graftlm.model_card`). Atomic: a save that fails midway leaves an earlier save in ``directory``
    as it was."""
    state = {k: v.detach().contiguous().cpu() for k, v in _expected_state(model).items()}
    with atomic_folder(directory, owned=OWNED) as tmp:
        model.config.to_json_file(tmp / CONFIG_NAME)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "graftlm": "SentenceVAE"})
        write_text(tmp / CARD_NAME, vae_card(model.config, model_card))


def load_checked(model: "SentenceVAE", state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` after checking it has exactly the expected keys and shapes."""
    expected = _expected_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if shapes:
            parts.append(f"wrong shapes: {'; '.join(shapes)}")
        raise ValueError(
            f"{source} does not fit this SentenceVAE config: " + " | ".join(parts)
            + " (check that the config matches the checkpoint)"
        )
    model.load_state_dict(state, strict=False)  # strict=False only for the tied key, checked above


def from_pretrained(cls, name_or_path: str | Path, device=None, dtype: torch.dtype | None = None,
                    **hub_kwargs: Any) -> "SentenceVAE":
    """A folder written by `save_pretrained`, or a model-hub id (``hub_kwargs``: ``revision``,
    ``cache_dir``, ``token``; offline, the local cache)."""
    directory = resolve_pretrained(name_or_path, "SentenceVAE", **hub_kwargs)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise ValueError(f"{directory} has no {name}; expected a folder written by SentenceVAE.save_pretrained")
    from graftlm.safetensors_io import read_safetensors

    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.bfloat16, got {dtype!r}")
    config = SentenceVAEConfig.from_json_file(directory / CONFIG_NAME)
    state = read_safetensors(directory / WEIGHTS_NAME, "SentenceVAE weights")
    if (directory / SHARED_NAME).is_file():
        _add_shared(read_safetensors(directory / SHARED_NAME, "SentenceVAE shared weights"),
                    _metadata(directory / SHARED_NAME), state)
    model = cls(config)
    load_checked(model, state, str(directory / WEIGHTS_NAME))
    return model.to(device=device, dtype=dtype).eval()



def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _add_shared(shared: dict[str, torch.Tensor], meta: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """Fill in the keys a shared tensor stands for: its metadata entry lists them, comma-separated
    (its own name when there is no entry)."""
    for name, tensor in shared.items():
        for key in filter(None, meta.get(name, name).split(",")):
            state.setdefault(key, tensor)


# ------------------------------------------------------------------ the authors' checkpoints
# moved to graftlm.vae.official (restricted reader, key mapping, configs); kept importable here
from graftlm.vae.official import convert_official, from_official, official_state_dict  # noqa: E402,F401
