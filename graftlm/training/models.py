"""Build the tokenizer and the model a recipe asks for (SentenceVAE or grafted SentenceLLM).

Backbones: ``tiny-opt`` (a random 2-layer OPT the width of ``hidden_size``, for ``--smoke`` and
tests), ``smollm2`` (the offline SmolLM2-135M, `graftlm.backbones.load_smollm2`), or any HF
causal-LM name/path (``facebook/opt-125m``…; needs the hub or a local copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, OPTConfig, OPTForCausalLM

from graftlm.backbones import load_smollm2
from graftlm.evaluation.speed import shared_copy
from graftlm.hub import check_pretrained
from graftlm.sllm import graft
from graftlm.sllm.reconstruction import set_reconstruction
from graftlm.tokenization import ByteTokenizer
from graftlm.training.recipes import TrainConfig
from graftlm.vae import SentenceVAE, SentenceVAEConfig
from graftlm.vae.warm_start import llama_decoder_fields


@dataclass
class Built:
    model: torch.nn.Module
    tokenizer: Any
    kind: str  # "svae" | "sllm"
    segment_tokens: int  # token budget per segment for the data pipeline
    pad_id: int
    backbone_factory: Any = None  # () -> a fresh, un-grafted backbone (SLLM eval baseline)
    info: dict[str, Any] = field(default_factory=dict)


def load_tokenizer(name: str) -> Any:
    if name == "byte":
        return ByteTokenizer()
    if name == "smollm2":
        return _smollm2()[1]


    check_pretrained(name, "tokenizer", key="tokenizer")
    return AutoTokenizer.from_pretrained(name)


def _smollm2() -> tuple[torch.nn.Module, Any]:
    return load_smollm2()


def special_ids(tokenizer: Any, model_config: Any = None) -> tuple[int, int, int]:
    """(pad, bos, eos) for a SentenceVAE: a backbone's ``model_config`` ids where it sets them, else
    the tokenizer's, with fallbacks: eos for a missing bos, eos for a missing pad."""
    def pick(name: str) -> Any:
        value = getattr(model_config, name, None)
        value = value if value is not None else getattr(tokenizer, name, None)
        return value[0] if isinstance(value, (list, tuple)) else value

    eos = pick("eos_token_id")
    if eos is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos_token_id; pick another tokenizer")
    bos, pad = pick("bos_token_id"), pick("pad_token_id")
    return int(eos if pad is None else pad), int(eos if bos is None else bos), int(eos)


def vae_config(cfg: TrainConfig, vocab_size: int, tokenizer: Any, *, hidden_size: int, num_heads: int,
               embed_dim: int | None = None, backbone_config: Any = None):
    pad, bos, eos = special_ids(tokenizer)
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_heads=num_heads, num_layers=cfg.num_layers,
                  pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, max_tokens=cfg.max_tokens)
    if embed_dim is not None and embed_dim != hidden_size:
        common["embed_dim"] = embed_dim
    if cfg.vae_loss is not None:
        common["loss"] = cfg.vae_loss
    if cfg.vae_preset == "official":
        return SentenceVAEConfig.official(dropout=cfg.dropout, **common)
    common.update(encoder=cfg.vae_encoder, positional_dim=cfg.positional_dim, conditioning=cfg.vae_conditioning,
                  memory_slots=cfg.memory_slots)
    if cfg.decoder_from_backbone:
        common.update(llama_decoder_fields(backbone_config, cfg.decoder_from_backbone))
    if "embed_dim" in common:
        common["tie_word_embeddings"] = False
    return SentenceVAEConfig(dropout=cfg.dropout, **common)


def freeze_vae_embeddings(vae: Any) -> None:
    """Keep the encoder's and decoder's token embeddings (and a tied head) fixed."""
    for part in (vae.encoder, vae.decoder):
        part.embedding.embed.weight.requires_grad_(False)


def segmenter_options(cfg: TrainConfig) -> dict[str, Any]:
    """The `RegexSegmenter` options a recipe sets beyond the token budget."""
    return {"rule": cfg.segment_rule, "min_tokens": cfg.min_tokens}


def _lora(cfg: TrainConfig) -> Any:
    if cfg.lora_rank is None:
        return None

    targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules=targets, lora_dropout=0.0)


def _segment_budget(vae: Any, cfg: TrainConfig) -> int:
    limit = vae.config.max_segment_tokens
    return min(cfg.max_tokens, limit) if limit is not None else cfg.max_tokens


def build_svae(cfg: TrainConfig) -> Built:
    tokenizer = load_tokenizer(cfg.tokenizer)
    if cfg.vae_path:
        vae = SentenceVAE.from_pretrained(cfg.vae_path)
    elif cfg.backbone == "smollm2" and cfg.init_embeddings:  # embeddings (and tied head) from the backbone's
        backbone = _smollm2()[0]
        emb = backbone.get_input_embeddings().weight.detach().float()
        vae = SentenceVAE(vae_config(cfg, emb.shape[0], tokenizer, hidden_size=cfg.hidden_size,
                                     num_heads=cfg.num_heads, embed_dim=emb.shape[1], backbone_config=backbone.config))
        vae.init_embeddings_from(emb)
        if cfg.decoder_from_backbone:
            vae.decoder_from_backbone(backbone.float())
    else:
        vae = SentenceVAE(vae_config(cfg, len(tokenizer), tokenizer, hidden_size=cfg.hidden_size,
                                     num_heads=cfg.num_heads))
    if cfg.warm_start and not cfg.vae_path:
        vae.warm_start()
    if cfg.freeze_embeddings:
        freeze_vae_embeddings(vae)
    vae.use_sampled_head(cfg.head_negatives if cfg.train_head == "sampled" else None)
    pad, _, _ = special_ids(tokenizer)
    return Built(vae, tokenizer, "svae", _segment_budget(vae, cfg), pad,
                 info={"parameters": sum(p.numel() for p in vae.parameters())})


def tiny_opt(vocab_size: int, hidden_size: int, num_heads: int, tokenizer: Any, seed: int) -> torch.nn.Module:
    """A random 2-layer OPT (the smoke backbone); same weights for the same seed."""
    pad, bos, eos = special_ids(tokenizer)
    config = OPTConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, ffn_dim=2 * hidden_size,
                       num_attention_heads=num_heads, max_position_embeddings=256, word_embed_proj_dim=hidden_size,
                       pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, dropout=0.0, attention_dropout=0.0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return OPTForCausalLM(config).eval()


def build_sllm(cfg: TrainConfig) -> Built:
    if cfg.backbone == "tiny-opt":
        tokenizer = load_tokenizer(cfg.tokenizer)

        def factory() -> torch.nn.Module:
            return tiny_opt(len(tokenizer), cfg.hidden_size, cfg.num_heads, tokenizer, cfg.seed)
    elif cfg.backbone == "smollm2":
        backbone, tokenizer = _smollm2()

        def factory() -> torch.nn.Module:
            return _smollm2()[0]
    else:

        check_pretrained(cfg.backbone, "backbone", key="backbone")
        tokenizer = AutoTokenizer.from_pretrained(cfg.backbone)

        def factory() -> torch.nn.Module:
            return AutoModelForCausalLM.from_pretrained(cfg.backbone, torch_dtype=torch.float32)
    if cfg.backbone != "smollm2":
        backbone = factory()
    emb = backbone.get_input_embeddings().weight
    if cfg.vae_path:
        vae = SentenceVAE.from_pretrained(cfg.vae_path)
    else:
        bc = backbone.config
        vae = SentenceVAE(vae_config(cfg, emb.shape[0], tokenizer, hidden_size=bc.hidden_size,
                                     num_heads=bc.num_attention_heads, embed_dim=emb.shape[1]))
        if cfg.init_embeddings:
            vae.init_embeddings_from(emb.detach().float())
        if cfg.warm_start:
            vae.warm_start()
    if cfg.freeze_embeddings:
        freeze_vae_embeddings(vae)
    vae.use_sampled_head(cfg.head_negatives if cfg.train_head == "sampled" else None)
    teacher = None
    if cfg.distill_weight > 0:  # a weight-sharing copy taken before grafting strips the original

        fixed = (cfg.lora_rank is not None or cfg.freeze == "backbone") and not cfg.train_layers
        if not fixed:
            raise ValueError("recipe key 'distill_weight' needs a backbone that stays fixed (lora_rank set, or "
                             "freeze: backbone, and no train_layers): the teacher shares its weights")
        teacher = shared_copy(backbone)
    sllm = graft(backbone, vae, freeze=cfg.freeze, train_layers=cfg.train_layers, lora=_lora(cfg),
                 termination_gamma=cfg.termination_gamma, tokenizer=tokenizer, attention=cfg.attention)
    sllm.graft_options["segmenter"] = {**segmenter_options(cfg), "max_tokens": _segment_budget(vae, cfg)}
    if teacher is not None:
        sllm.set_teacher(teacher, weight=cfg.distill_weight, topk=cfg.distill_topk)
    set_reconstruction(sllm, cfg.reconstruction_weight)
    pad, _, _ = special_ids(tokenizer)
    return Built(sllm, tokenizer, "sllm", _segment_budget(vae, cfg), pad, backbone_factory=factory,
                 info={"parameters": sum(p.numel() for p in sllm.parameters()),
                       "trainable": sum(p.numel() for p in sllm.parameters() if p.requires_grad)})


def build(cfg: TrainConfig) -> Built:
    return build_svae(cfg) if cfg.model == "svae" else build_sllm(cfg)
