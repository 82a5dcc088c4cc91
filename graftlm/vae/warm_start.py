"""Warm starts (issue 19): begin from what a pretrained backbone already knows instead of noise.

* `warm_start_encoder`: the encoder's residual branches start at zero, so the first sentence
  vector is LayerNorm(mean of the segment's input embeddings), the backbone's own token space when
  the embeddings are the backbone's (Block Transformer's uptraining initialises its embedder to the
  mean of the pretrained token embeddings); prefix slots start as copies of the vector.
* `decoder_from_backbone`: a ``decoder_style="llama"`` decoder takes a Llama-family backbone's
  *last* k layers and its final norm (the head is the tied embedding matrix, copied by
  `SentenceVAE.init_embeddings_from`), so at step 0 it is the top of the backbone reading the
  prefix slots and the tokens (Block Transformer's token decoder is the pretrained model's upper
  half).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from graftlm.vae.model import SentenceVAE


@torch.no_grad()
def warm_start_encoder(vae: "SentenceVAE") -> None:
    """Zero the encoder's residual branches (the positional fusion's ``flat`` layer, or each
    pre-norm block's attention and FFN output projections) and make the prefix expansion the
    identity per slot. Call it after `SentenceVAE.init_embeddings_from`."""
    c = vae.config
    enc = vae.encoder
    if enc.positional is not None:
        branches = [enc.positional.flat]
    else:
        if not c.norm_first or c.fusion != "mean" or c.position != "rope":
            raise ValueError("warm_start needs pre-norm blocks, mean fusion and RoPE (the modern preset) or "
                             "encoder='positional': otherwise no zero branch makes the vector the mean embedding")
        branches = [m for layer in enc.layers for m in (layer.self_attn.out_proj, layer.linear2)]
    for lin in branches:
        lin.weight.zero_()
        lin.bias.zero_()
    expand = vae.decoder.expand
    if expand is not None:
        expand.weight.copy_(torch.eye(c.hidden_size, dtype=expand.weight.dtype).repeat(c.memory_slots, 1))
        expand.bias.zero_()


def _llama_parts(backbone: Any) -> tuple[Any, Any, Any]:
    """(layers, final norm, config) of a Llama-family causal LM (``model.layers`` + ``model.norm``)."""
    body = getattr(backbone, "model", backbone)
    layers, norm = getattr(body, "layers", None), getattr(body, "norm", None)
    if layers is None or norm is None or not hasattr(layers[0], "mlp") or not hasattr(layers[0].mlp, "gate_proj"):
        raise ValueError(f"decoder_from_backbone needs a Llama-family backbone (model.layers with gated MLPs and "
                         f"model.norm), got {type(backbone).__name__}")
    return layers, norm, backbone.config


@torch.no_grad()
def decoder_from_backbone(vae: "SentenceVAE", backbone: Any, num_layers: int | None = None) -> None:
    """Copy the backbone's last ``num_layers`` (default: the decoder's depth) layers and final norm
    into a ``decoder_style="llama"`` decoder; every shape and setting must match (checked first)."""
    c = vae.config
    if c.decoder_style != "llama":
        raise ValueError("decoder_from_backbone needs SentenceVAEConfig(decoder_style='llama', conditioning='prefix')")
    layers, norm, bc = _llama_parts(backbone)
    k = c.num_layers if num_layers is None else num_layers
    if k != c.num_layers or not 1 <= k <= len(layers):
        raise ValueError(f"num_layers={num_layers}: the decoder has {c.num_layers} layer(s) and the backbone "
                         f"{len(layers)}; build the config with num_layers = the k you want (1..{len(layers)})")
    expected = {"hidden_size": c.hidden_size, "num_attention_heads": c.num_heads,
                "num_key_value_heads": c.num_kv_heads, "intermediate_size": c.ffn_size,
                "rope_theta": c.rope_theta, "rms_norm_eps": c.layer_norm_eps}
    wrong = []
    for key, mine in expected.items():
        theirs = getattr(bc, key, None)
        if key == "rope_theta" and theirs is None:
            theirs = (getattr(bc, "rope_parameters", None) or {}).get("rope_theta")
        if theirs is None or float(theirs) != float(mine):
            wrong.append(f"{key}: backbone {theirs!r}, SentenceVAE {mine!r}")
    scaling = getattr(bc, "rope_scaling", None) or {}
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        wrong.append(f"rope_scaling {scaling} (the SentenceVAE's RoPE has none)")
    if getattr(bc, "attention_bias", False) or getattr(bc, "mlp_bias", False):
        wrong.append("attention_bias/mlp_bias (the SentenceVAE's Llama blocks are bias-free)")
    if wrong:
        raise ValueError("the backbone's layers do not fit this SentenceVAE decoder: " + "; ".join(wrong))
    for mine, theirs in zip(vae.decoder.layers, list(layers)[len(layers) - k:]):
        mine.load_state_dict(theirs.state_dict())
    vae.decoder.norm.load_state_dict(norm.state_dict())


def llama_decoder_fields(backbone_config: Any, num_layers: int) -> dict[str, Any]:
    """The SentenceVAEConfig fields of a ``decoder_style="llama"`` decoder that can take a
    Llama-family backbone's last ``num_layers`` layers (prefix conditioning; 4 slots unless set)."""
    bc = backbone_config
    theta = getattr(bc, "rope_theta", None) or (getattr(bc, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return dict(decoder_style="llama", conditioning="prefix", num_layers=num_layers, hidden_size=bc.hidden_size,
                num_heads=bc.num_attention_heads, num_kv_heads=getattr(bc, "num_key_value_heads", None)
                or bc.num_attention_heads, ffn_size=bc.intermediate_size, rope_theta=float(theta),
                layer_norm_eps=float(bc.rms_norm_eps), position="rope", norm_first=True)
