"""The authors' SentenceLLM ``.pth`` files → a `SentenceLLM` on a transformers OPT backbone.

Their model (``sentence_vae/models/sentence_llm_model.py``) keeps, of the OPT it starts from, only
the learned position embedding (``llm_pe``) and the decoder layers (``llm_layers``), called one by
one: no ``project_in``/``project_out`` (the layers run at ``hidden_size``, also for OPT-350M) and
no final layer norm; ``fc`` (Linear(h → 2)) is the termination head, index 1 = "another sentence
follows", as in graftlm. `OfficialOPTAdapter` strips an OPT down to exactly that.

Their layers get no attention mask: bidirectional under the eager attention of their time
(reference.md §2). ``attention="causal"`` (default) gives the language model they meant;
``attention="bidirectional"`` reproduces what they trained and measured, for research (warns).
Their code also let real positions attend to the empty padding slots of a batch; graftlm masks
padding, so the leaky mode matches their numbers on batches without empty slots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from graftlm.plugins.adapter import BackboneAdapter
from graftlm.sllm.graft import graft_into
from graftlm.sllm.leak import check_attention
from graftlm.vae import SentenceVAE
from graftlm.vae.official import (
    check_official_keys,
    expected_official_shapes,
    official_state_dict,
    read_official_checkpoint,
    vae_from_official_state,
)
from graftlm.vae.official_config import official_config

__all__ = ["OfficialMixin", "OfficialOPTAdapter", "from_official", "strip_official_layout"]


class OfficialOPTAdapter(BackboneAdapter):
    """OPT as the authors used it: positions + decoder layers only, at ``hidden_size``."""

    name = "opt-official"
    model_types = ("opt",)
    verified_model_types = model_types  # checked against the authors' own outputs (tests/test_official_sllm.py)

    def strip(self, model: nn.Module) -> nn.Module:
        decoder = getattr(getattr(model, "model", model), "decoder", None)
        if decoder is None:
            raise TypeError(f"expected an OPTForCausalLM or OPTModel, got {type(model).__name__}")
        for name in ("embed_tokens", "project_in", "project_out", "final_layer_norm"):
            setattr(decoder, name, None)  # their model never runs these
        if hasattr(model, "lm_head"):
            model.lm_head = None
        return decoder

    def hidden_size(self, body: nn.Module) -> int:
        return int(body.config.hidden_size)


def _backbone(backbone: Any) -> nn.Module:
    if isinstance(backbone, (str, Path)):
        backbone = AutoModelForCausalLM.from_pretrained(str(backbone), torch_dtype=torch.float32)
    elif isinstance(backbone, PretrainedConfig):
        backbone = AutoModelForCausalLM.from_config(backbone)  # every weight used comes from the file
    if not isinstance(backbone, nn.Module) or getattr(getattr(backbone, "config", None), "model_type", None) != "opt":
        raise TypeError("backbone must be a transformers OPT model (OPTForCausalLM), its config, or its name/path; "
                        f"got {type(backbone).__name__}: their SentenceLLM only exists on OPT")
    return backbone


def _split(state: dict[str, torch.Tensor]) -> tuple[dict, dict, dict, list[str]]:
    vae, body, head, other = {}, {}, {}, []
    for key, tensor in state.items():
        if key.startswith("svae."):
            vae[key[len("svae."):]] = tensor
        elif key == "llm_pe.weight":
            body["embed_positions.weight"] = tensor
        elif key.startswith("llm_layers."):
            body["layers." + key[len("llm_layers."):]] = tensor
        elif key in ("fc.weight", "fc.bias"):
            head[key[len("fc."):]] = tensor
        else:
            other.append(key)
    return vae, body, head, other


def _file_name(ours: str) -> str:
    return "llm_pe.weight" if ours == "embed_positions.weight" else "llm_" + ours


def from_official(cls: Any, path: str | Path, config: Any, *, backbone: Any, use_ema: bool | None = None,
                  attention: str = "causal", backbone_config: Any = None) -> Any:
    """Load the authors' SentenceLLM checkpoint onto ``backbone`` (an OPT model, config or name).

    ``config``: their SLLM YAML (``__base__`` resolved), its dict, their constructor kwargs, or a
    `SentenceVAEConfig` for the SVAE part; what their YAML leaves to ``ref_model_dir`` is taken
    from ``backbone_config`` or else the backbone's own config. ``use_ema``: as for
    `SentenceVAE.from_official`. Every check runs before ``backbone`` is modified.
    """
    source = str(path)
    check_attention(attention)
    model = _backbone(backbone)
    vae_config = official_config(config, backbone_config=backbone_config if backbone_config is not None else model.config)
    state = official_state_dict(read_official_checkpoint(path), use_ema=use_ema, source=source)
    vae_state, body_state, head_state, _ = _split(state)
    H = int(model.config.hidden_size)
    if vae_config.hidden_size != H:
        raise ValueError(f"the SVAE config has hidden_size {vae_config.hidden_size} but the OPT backbone {H}: "
                         "their SentenceLLM feeds sentence vectors straight into the OPT layers")
    adapter = OfficialOPTAdapter()
    decoder = model.model.decoder
    body_shapes = {_file_name(k): tuple(v.shape) for k, v in decoder.state_dict().items()
                   if k == "embed_positions.weight" or k.startswith("layers.")}
    expected = {**{f"svae.{k}": s for k, s in expected_official_shapes(vae_config).items()}, **body_shapes,
                "fc.weight": (2, H), "fc.bias": (2,)}
    check_official_keys(state, expected, source, hint="check the config and that the backbone is the OPT "
                        "size the checkpoint was trained on (layers, hidden_size, max_position_embeddings)")
    vae = vae_from_official_state(SentenceVAE, vae_state, vae_config, source)
    dtype = next(model.parameters()).dtype
    sllm = graft_into(cls, model, vae, adapter=adapter, attention=attention)
    missing, unexpected = sllm.body.load_state_dict({k: v.to(dtype) for k, v in body_state.items()}, strict=False)
    left = [k for k in missing if k == "embed_positions.weight" or k.startswith("layers.")]
    if left or unexpected:  # cannot happen once the file's keys were checked: a mapping bug
        raise RuntimeError(f"internal key mapping error for {source}: missing {left}, unexpected {unexpected}")
    sllm.termination_head.load_state_dict({k: v.to(dtype) for k, v in head_state.items()})
    sllm.backbone_info["official_checkpoint"] = source
    return sllm.eval()


class OfficialMixin:
    """`SentenceLLM.from_official` (`from_official` above)."""

    @classmethod
    def from_official(cls, path: Any, config: Any, *, backbone: Any, **kwargs: Any) -> Any:
        """The authors' SentenceLLM ``.pth`` onto a transformers OPT ``backbone`` (never unpickled);
        ``use_ema=``, ``attention=``, ``backbone_config=``: see `graftlm.sllm.official`."""
        return from_official(cls, path, config, backbone=backbone, **kwargs)


def strip_official_layout(sentence_mask: torch.Tensor, sentence_toks: torch.Tensor, tok_mask: torch.Tensor,
                          bos_token_id: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Their `PassageCollate` output (every slot ``</s>`` + tokens; empty slots just ``</s>``) →
    graftlm's (input_ids, token_mask, sentence_mask): the leading ``</s>`` dropped, empty slots
    all padding. Raises if a slot does not start with ``bos_token_id``."""
    if sentence_toks.dim() != 3 or tok_mask.shape != sentence_toks.shape or sentence_mask.shape != sentence_toks.shape[:2]:
        raise ValueError(f"expected (B, S) sentence_mask and (B, S, T) toks / tok_mask, got {tuple(sentence_mask.shape)}, "
                         f"{tuple(sentence_toks.shape)}, {tuple(tok_mask.shape)}")
    sm = sentence_mask.bool()
    if bool((sentence_toks[..., 0][sm] != bos_token_id).any()):
        raise ValueError(f"a sentence does not start with bos id {bos_token_id}: not the authors' layout")
    tm = tok_mask[..., 1:].bool() & sm[..., None]
    if bool((sm & ~tm.any(-1)).any()):
        raise ValueError("a real sentence holds only the leading </s> (an empty sentence); drop it first")
    return sentence_toks[..., 1:], tm, sm
