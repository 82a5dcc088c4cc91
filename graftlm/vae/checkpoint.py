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
from graftlm.safetensors_io import fit_problems, read_safetensors
from graftlm.vae.config import SentenceVAEConfig
from graftlm.vae.files import CARD_NAME, CONFIG_NAME, OWNED, TIED_KEY, WEIGHTS_NAME
from graftlm.vae.shared_weights import add_shared

if TYPE_CHECKING:  # annotations only: the class imports this module
    from graftlm.vae.model import SentenceVAE


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
    expected = {k: tuple(v.shape) for k, v in _expected_state(model).items()}
    parts = fit_problems(expected, state)
    if parts:
        raise ValueError(f"{source} does not fit this SentenceVAE config: " + " | ".join(parts)
                         + " (check that the config matches the checkpoint)")
    model.load_state_dict(state, strict=False)  # strict=False only for the tied key, checked above


def from_pretrained(cls, name_or_path: str | Path, device=None, dtype: torch.dtype | None = None,
                    **hub_kwargs: Any) -> "SentenceVAE":
    """A folder written by `save_pretrained`, or a model-hub id (``hub_kwargs``: ``revision``,
    ``cache_dir``, ``token``; offline, the local cache)."""
    directory = resolve_pretrained(name_or_path, "SentenceVAE", **hub_kwargs)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise ValueError(f"{directory} has no {name}; expected a folder written by SentenceVAE.save_pretrained")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.bfloat16, got {dtype!r}")
    config = SentenceVAEConfig.from_json_file(directory / CONFIG_NAME)
    state = read_safetensors(directory / WEIGHTS_NAME, "SentenceVAE weights")
    add_shared(directory, state)  # frozen embeddings stored once (graftlm.vae.shared_weights)
    model = cls(config)
    load_checked(model, state, str(directory / WEIGHTS_NAME))
    return model.to(device=device, dtype=dtype).eval()
