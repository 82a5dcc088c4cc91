"""SentenceVAE checkpoints: our own format (config.json + model.safetensors) and the authors' .pth.

No pickle is ever executed: safetensors for our files, ``torch.load(weights_only=True)`` for theirs.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from graftlm.vae.config import SentenceVAEConfig

if TYPE_CHECKING:
    from graftlm.vae.model import SentenceVAE

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIED_KEY = "decoder.lm_head.weight"  # the same tensor as decoder.embedding.embed.weight when tied


def _expected_state(model: "SentenceVAE") -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop(TIED_KEY, None)
    return state


def save_pretrained(model: "SentenceVAE", directory: str | Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (a tied head is stored once)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(directory / CONFIG_NAME)
    state = {k: v.detach().contiguous().cpu() for k, v in _expected_state(model).items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "graftlm": "SentenceVAE"})


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


def from_pretrained(cls, directory: str | Path, device=None, dtype: torch.dtype | None = None) -> "SentenceVAE":
    directory = Path(directory)
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


SHARED_NAME = "shared.safetensors"  # optional: tensors stored once for several keys (graftlm.demo.storage)


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
_RENAMES = [  # (official pattern, our name); {i} = layer index, rest = the parameter's tail
    (r"encoder\.embed_token\.weight", "encoder.embedding.embed.weight"),
    (r"encoder\.project_in\.weight", "encoder.embedding.project_in.weight"),
    (r"encoder\.lnorm\.(weight|bias)", r"encoder.fusion_norm.\1"),
    (r"encoder\.la\.(weight|bias)", r"encoder.fusion_weight.\1"),
    (r"decoder\.embed_token\.weight", "decoder.embedding.embed.weight"),
    (r"decoder\.project_in\.weight", "decoder.embedding.project_in.weight"),
    (r"decoder\.linear\.(weight|bias)", r"decoder.lm_head.\1"),
    (r"(encoder|decoder)\.\1\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", r"\1.layers.\2.self_attn.qkv.\3"),
    (r"(encoder|decoder)\.\1\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"\1.layers.\2.self_attn.out_proj.\3"),
    (r"decoder\.decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.(weight|bias)", r"decoder.layers.\1.cross_attn.out_proj.\2"),
    (r"(encoder|decoder)\.\1\.layers\.(\d+)\.(linear[12]|norm[123])\.(weight|bias)", r"\1.layers.\2.\3.\4"),
]
_CROSS_IN_PROJ = re.compile(r"decoder\.decoder\.layers\.(\d+)\.multihead_attn\.in_proj_(weight|bias)")


def _torch_load_weights_only(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a weights-only checkpoint: it pickles Python objects that torch.load("
            "weights_only=True) refuses to run, and unpickling untrusted files can execute code. "
            "Re-save it as a plain state dict (torch.save(model.state_dict(), path)) from a trusted "
            f"environment. ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err


def official_state_dict(checkpoint, *, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Unwrap an mmengine checkpoint (``state_dict``/``ema_state_dict``) and strip
    ``module.``/``model.`` prefixes; return the official flat state dict."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a state dict or an mmengine checkpoint dict, got {type(checkpoint).__name__}")
    key = "ema_state_dict" if use_ema else "state_dict"
    if use_ema and key not in checkpoint:
        raise ValueError("use_ema=True but the checkpoint has no 'ema_state_dict'")
    state = checkpoint.get(key, checkpoint)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and k != "steps"}
    changed = True
    while changed and state:
        changed = False
        for prefix in ("module.", "model.", "ema_model."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def convert_official(state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """Rename official keys to ours; split the decoder's cross-attention in_proj into q / kv.
    Keys that match no rule are kept unchanged (and reported as unexpected by the loader)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        m = _CROSS_IN_PROJ.fullmatch(name)
        if m:
            i, kind = m.groups()
            out[f"decoder.layers.{i}.cross_attn.q_proj.{kind}"] = tensor[:hidden_size]
            out[f"decoder.layers.{i}.cross_attn.kv_proj.{kind}"] = tensor[hidden_size:]
            continue
        for pattern, replacement in _RENAMES:
            if re.fullmatch(pattern, name):
                name = re.sub(pattern, replacement, name)
                break
        out[name] = tensor
    return out


def from_official(cls, path: str | Path, config: SentenceVAEConfig, *, use_ema: bool = False) -> "SentenceVAE":
    """Load the authors' ``.pth`` (raw state dict or mmengine checkpoint) into a SentenceVAE."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint file at {path}")
    state = official_state_dict(_torch_load_weights_only(path), use_ema=use_ema)
    model = cls(config)
    dtype = next(model.parameters()).dtype
    converted = {k: v.to(dtype) for k, v in convert_official(state, config.hidden_size).items()}
    load_checked(model, converted, str(path))
    return model.eval()
