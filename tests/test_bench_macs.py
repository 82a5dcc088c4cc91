"""The MAC-count model of graftlm.bench.macs, checked against real modules' weight counts."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

from graftlm.bench.macs import BackboneShape, VAEShape, mac_bound
from graftlm.vae import SentenceVAEConfig


def _opt(**kw):
    base = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                max_position_embeddings=32, word_embed_proj_dim=16)
    base.update(kw)
    return OPTConfig(**base)


def _matrix_numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if p.dim() == 2)


def test_opt_layer_macs_equal_layer_weight_count():
    cfg = _opt()
    model = OPTForCausalLM(cfg)
    assert BackboneShape.from_config(cfg).layer_macs(context=0) == _matrix_numel(model.model.decoder.layers)


def test_llama_gqa_layer_macs_equal_layer_weight_count():
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(cfg)
    assert BackboneShape.from_config(cfg).layer_macs(context=0) == _matrix_numel(model.model.layers)


def test_opt_head_macs_include_narrow_embedding_projection():
    cfg = _opt(hidden_size=16, word_embed_proj_dim=8)
    model = OPTForCausalLM(cfg)
    expected = model.lm_head.weight.numel() + model.model.decoder.project_out.weight.numel()
    assert BackboneShape.from_config(cfg).head_macs() == expected


def test_attention_macs_grow_linearly_with_context():
    shape = BackboneShape.from_config(_opt())
    step = shape.layer_macs(11) - shape.layer_macs(10)
    assert step == 2 * shape.layers * shape.hidden


def test_encoder_macs_match_formula_on_tiny_config():
    vae = VAEShape.from_config(SentenceVAEConfig.official(vocab_size=40, hidden_size=8, num_heads=2, num_layers=2,
                                                          encoder_bos=False))
    h, f, L = 8, 16, 3
    assert vae.encoder_macs(L) == L * 2 * (4 * h * h + 2 * h * f + 2 * h * L)


def test_encoder_bos_adds_one_position():
    cfg = SentenceVAEConfig.official(vocab_size=40, hidden_size=8, num_heads=2, num_layers=2)
    with_bos = VAEShape.from_config(cfg)
    without = VAEShape.from_config(SentenceVAEConfig.official(vocab_size=40, hidden_size=8, num_heads=2,
                                                              num_layers=2, encoder_bos=False))
    assert with_bos.encoder_macs(3) == without.encoder_macs(4)


def test_bound_is_ratio_of_per_token_costs():
    cfg = _opt()
    vcfg = SentenceVAEConfig.official(vocab_size=40, hidden_size=16, num_heads=2, num_layers=1)
    b = mac_bound(cfg, vcfg, sentence_len=4)
    assert b.ratio == pytest.approx(b.backbone_per_token / sum(b.sllm_parts.values()))


def test_longer_sentences_raise_the_bound():
    cfg = OPTConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=8, ffn_dim=256, num_attention_heads=4,
                    word_embed_proj_dim=64)
    vcfg = SentenceVAEConfig.official(vocab_size=1000, hidden_size=64, num_heads=4, num_layers=1)
    assert mac_bound(cfg, vcfg, 16).ratio > mac_bound(cfg, vcfg, 4).ratio


def test_a_cut_last_sentence_still_pays_a_whole_backbone_step():
    # 64 tokens in sentences of 9 are 8 backbone steps (7 full sentences and 1 token), like sentences of 8
    cfg = OPTConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=8, ffn_dim=256, num_attention_heads=4,
                    word_embed_proj_dim=64)
    vcfg = SentenceVAEConfig.official(vocab_size=1000, hidden_size=64, num_heads=4, num_layers=1)
    nine, eight = mac_bound(cfg, vcfg, 9, new_tokens=64), mac_bound(cfg, vcfg, 8, new_tokens=64)
    assert nine.sllm_parts["backbone_step"] == pytest.approx(eight.sllm_parts["backbone_step"], rel=0.02)
    assert mac_bound(cfg, vcfg, 9, new_tokens=63).ratio > nine.ratio  # 63 = 7 whole sentences


def test_sentence_len_must_be_positive():
    vcfg = SentenceVAEConfig.official(vocab_size=40, hidden_size=16, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="sentence_len"):
        mac_bound(_opt(), vcfg, 0)


def test_positional_encoder_macs_equal_torch_flop_count():
    from torch.utils.flop_counter import FlopCounterMode

    from graftlm.vae import SentenceVAE

    cfg = SentenceVAEConfig(vocab_size=50, hidden_size=16, num_heads=2, num_layers=1, max_tokens=6,
                            encoder="positional", positional_dim=4)
    vae = SentenceVAE(cfg).eval()
    L = 4
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.encode(torch.randint(3, 50, (1, L)), torch.ones(1, L, dtype=torch.bool))
    assert counter.get_total_flops() == 2 * VAEShape.from_config(cfg).encoder_macs(L)


def test_prefix_conditioning_moves_cross_attention_into_slots():
    cross = SentenceVAEConfig(vocab_size=50, hidden_size=16, num_heads=2, num_layers=1, max_tokens=6)
    prefix = SentenceVAEConfig(vocab_size=50, hidden_size=16, num_heads=2, num_layers=1, max_tokens=6,
                               conditioning="prefix", memory_slots=3)
    c, p = VAEShape.from_config(cross), VAEShape.from_config(prefix)
    h, f = 16, 64
    assert c.sentence_setup_macs() == 2 * h * h
    # a step: no cross-attention Q/O and its key, 3 more self-attention keys
    assert c.decoder_token_macs(2) - p.decoder_token_macs(2) == (2 * h * h + 2 * h) - 2 * h * 3
    slot_layer = 4 * h * h + 2 * h * 2 + 2 * h * f  # each slot attends to (3 + 1) / 2 keys on average
    assert p.sentence_setup_macs() == h * 3 * h + 3 * slot_layer
