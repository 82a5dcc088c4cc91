"""The authors' SentenceVAE ``.pth`` files (BestAnHongjun/SentenceVAE, mmengine) → `SentenceVAE`.

Nothing in the file is executed: `graftlm.vae.safe_pickle` reads it. The file may be a bare
``state_dict``, a published mmengine checkpoint (``meta`` + ``state_dict``) or a full training
checkpoint (with ``optimizer``, ``message_hub``, ``ema_state_dict``).

EMA. mmengine's ``EMAHook.before_save_checkpoint`` swaps the two before writing, so in a saved
file ``state_dict`` holds the AVERAGED weights and ``ema_state_dict`` (keys ``module.``-prefixed,
plus ``steps``) the RAW ones. ``use_ema=None`` (default) loads ``state_dict``, as their tools do;
``True`` does the same but requires the file to prove it is the average (an ``ema_state_dict``
beside it); ``False`` loads the raw weights from ``ema_state_dict``.

Their input layout: their tokenizer output starts with ``</s>`` (OPT's bos); graftlm adds bos
itself, so pass the tokens without it (`strip_official_bos`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from graftlm.safetensors_io import fit_problems
from graftlm.vae.config import SentenceVAEConfig
from graftlm.vae.official_config import (
    check_official_architecture,
    load_official_yaml,
    official_config,
)
from graftlm.vae.safe_pickle import read_tensors

if TYPE_CHECKING:
    from graftlm.vae.model import SentenceVAE

__all__ = ["from_official", "official_config", "load_official_yaml", "official_state_dict", "convert_official",
           "expected_official_shapes", "read_official_checkpoint", "strip_official_bos"]

_RENAMES = [  # (official pattern, our name)
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


def read_official_checkpoint(path: str | Path) -> dict[str, Any]:
    """The file's nested dicts of tensors (no code from the file runs; other objects dropped)."""
    tensors, _ = read_tensors(path)
    return tensors


def official_state_dict(checkpoint: dict[str, Any], *, use_ema: bool | None = None, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Pick the weights (see the module docstring for ``use_ema``), drop ``steps``, strip
    ``module.`` / ``model.`` prefixes; the result has the file's own key names."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{source}: expected a state dict or an mmengine checkpoint dict, got {type(checkpoint).__name__}")
    wrapped = isinstance(checkpoint.get("state_dict"), dict)
    has_raw = isinstance(checkpoint.get("ema_state_dict"), dict)
    if use_ema is False:
        if not has_raw:
            raise ValueError(
                f"use_ema=False but {source} has no 'ema_state_dict' (keys: {', '.join(sorted(checkpoint)[:8])}): "
                "mmengine keeps the raw weights only there, and published checkpoints drop it; this file holds one "
                "set of weights — load it with the default use_ema=None")
        state = checkpoint["ema_state_dict"]
    else:
        if use_ema and not has_raw:
            raise ValueError(
                f"use_ema=True but {source} has no 'ema_state_dict', so nothing shows its 'state_dict' is the EMA "
                "average (mmengine's EMAHook writes both); use the default use_ema=None to load it as it is")
        state = checkpoint["state_dict"] if wrapped else checkpoint
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and k != "steps"}
    if not state:
        raise ValueError(f"{source} holds no tensors under {'ema_state_dict' if use_ema is False else 'state_dict'}; "
                         f"top-level keys: {', '.join(sorted(checkpoint)[:12])}")
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "model.", "ema_model."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def expected_official_shapes(config: SentenceVAEConfig) -> dict[str, tuple[int, ...]]:
    """Every key (and shape) an authors' SentenceVAE with this config has, in THEIR names."""
    V, H, E, F = config.vocab_size, config.hidden_size, config.embed_dim, config.ffn_size
    shapes: dict[str, tuple[int, ...]] = {}

    def block(prefix: str, attn: tuple[str, ...], norms: int) -> None:
        for a in attn:
            shapes.update({f"{prefix}.{a}.in_proj_weight": (3 * H, H), f"{prefix}.{a}.in_proj_bias": (3 * H,),
                           f"{prefix}.{a}.out_proj.weight": (H, H), f"{prefix}.{a}.out_proj.bias": (H,)})
        shapes.update({f"{prefix}.linear1.weight": (F, H), f"{prefix}.linear1.bias": (F,),
                       f"{prefix}.linear2.weight": (H, F), f"{prefix}.linear2.bias": (H,)})
        for n in range(1, norms + 1):
            shapes.update({f"{prefix}.norm{n}.weight": (H,), f"{prefix}.norm{n}.bias": (H,)})

    for part in ("encoder", "decoder"):
        shapes[f"{part}.embed_token.weight"] = (V, E)
        if E != H:
            shapes[f"{part}.project_in.weight"] = (H, E)
    for i in range(config.num_layers):
        block(f"encoder.encoder.layers.{i}", ("self_attn",), 2)
        block(f"decoder.decoder.layers.{i}", ("self_attn", "multihead_attn"), 3)
    shapes.update({"encoder.lnorm.weight": (H,), "encoder.lnorm.bias": (H,), "decoder.linear.weight": (V, H),
                   "decoder.linear.bias": (V,)})
    if config.fusion == "weighted":
        shapes.update({"encoder.la.weight": (1, H), "encoder.la.bias": (1,)})
    return shapes


def check_official_keys(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source: str,
                        hint: str = "check the config (layers, width, vocab, learnable_add, word_embed_proj_dim)") -> None:
    """Raise a ValueError naming missing / unexpected / misshapen keys by the FILE's names."""
    parts = fit_problems(expected, state, theirs="file", ours="config")
    if parts:
        raise ValueError(f"{source} does not fit the config: " + " | ".join(parts) + f" ({hint})")


def convert_official(state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """Rename official keys to ours; split the decoder's cross-attention in_proj into q / kv.
    Keys that match no rule are kept unchanged."""
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


def vae_from_official_state(cls, state: dict[str, torch.Tensor], config: SentenceVAEConfig, source: str) -> "SentenceVAE":
    """Build a SentenceVAE from an official (file-named) SVAE state dict, checked key by key."""
    check_official_architecture(config)
    check_official_keys(state, expected_official_shapes(config), source)
    model = cls(config)
    dtype = next(model.parameters()).dtype
    converted = {k: v.to(dtype) for k, v in convert_official(state, config.hidden_size).items()}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:  # cannot happen once the file's keys were checked: a mapping bug
        raise RuntimeError(f"internal key mapping error for {source}: missing {missing}, unexpected {unexpected}")
    return model.eval()


def from_official(cls, path: str | Path, config: Any, *, use_ema: bool | None = None,
                  backbone_config: Any = None) -> "SentenceVAE":
    """Load the authors' SentenceVAE ``.pth`` into a SentenceVAE.

    ``config``: their YAML file (``__base__`` includes resolved), their config dict, or a
    `SentenceVAEConfig`; ``backbone_config``: the OPT config their YAML leaves to ``ref_model_dir``
    (see `official_config`). ``use_ema``: see the module docstring.
    """
    config = official_config(config, backbone_config=backbone_config)
    source = str(path)
    state = official_state_dict(read_official_checkpoint(path), use_ema=use_ema, source=source)
    return vae_from_official_state(cls, state, config, source)


def strip_official_bos(input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_token_id: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Their layout (``</s>`` + tokens, right-padded) → graftlm's (tokens only). Raises if a row
    does not start with ``bos_token_id`` or has no token after it."""
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(f"expected (batch, tokens) ids and mask of one shape, got {tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask.bool()
    bad = ((input_ids[:, 0] != bos_token_id) | ~mask[:, 0]).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"rows {bad} do not start with bos id {bos_token_id}: not the authors' layout")
    if input_ids.shape[1] < 2 or not bool(mask[:, 1].all()):
        raise ValueError("a row holds only the leading bos (an empty sentence); drop empty sentences first")
    return input_ids[:, 1:], mask[:, 1:]
