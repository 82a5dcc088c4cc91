"""The authors' SentenceVAE files, made by THEIR code (tests/fixtures/official, see its README):
vectors, teacher-forced logits and greedy tokens reproduced; EMA vs raw weights of a real mmengine
Runner checkpoint; their config forms; their input layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from graftlm.vae import SentenceVAE, SentenceVAEConfig
from graftlm.vae.official import official_config, strip_official_bos

from fixtures.tiny_models import one_thread  # noqa: F401

DIR = Path(__file__).parent / "fixtures" / "official"
META = json.loads((DIR / "fixtures.json").read_text())
OUT = load_file(str(DIR / "outputs.safetensors"))
SUM = {**META["svae"], "learnable_add": False}  # their SentenceVAE constructor kwargs
LA = {**META["svae"], "learnable_add": True, "word_embed_proj_dim": 8}
CASES = {  # fixture prefix: (file, their config, use_ema)
    "svae_sum": ("svae_sum_state_dict.pth", SUM, None),
    "svae_la_ema": ("svae_la_proj_iter_4.pth", LA, True),
    "svae_la_raw": ("svae_la_proj_iter_4.pth", LA, False),
}


def their_inputs():
    return OUT["svae.input_ids"], OUT["svae.attention_mask"].bool()


@pytest.mark.parametrize("case", list(CASES))
def test_vectors_and_teacher_forced_logits_match_their_code(case):
    file, config, use_ema = CASES[case]
    model = SentenceVAE.from_official(DIR / file, config, use_ema=use_ema)
    ids, mask = their_inputs()
    tokens, token_mask = strip_official_bos(ids, mask)
    with torch.no_grad():
        vectors = model.encode(tokens, token_mask)
        logits = model.decode_logits(vectors, tokens, token_mask)
    torch.testing.assert_close(vectors, OUT[f"{case}.vectors"], atol=1e-5, rtol=1e-5)
    # their position i (input [</s>, t1..]) predicts token i+1, like ours; compare where theirs is real
    torch.testing.assert_close(logits[mask], OUT[f"{case}.logits"][mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["svae_sum", "svae_la_ema"])
def test_greedy_tokens_match_their_decoder(case):
    file, config, use_ema = CASES[case]
    model = SentenceVAE.from_official(DIR / file, config, use_ema=use_ema)
    expected = META[f"{case}.greedy"]  # theirs end with the eos id; ours stop before it
    assert len({len(r) for r in expected}) > 1, "fixture rows should stop at different steps"
    with torch.no_grad():
        got = model.generate(OUT[f"{case}.vectors"], 16)
    assert got == [row[:-1] for row in expected]


def test_ema_flag_picks_the_weights_mmengine_really_saved():
    """mmengine's EMAHook swaps before saving: state_dict = average, ema_state_dict = raw
    (checked in the fixture run against the live Runner's model and EMA copy)."""
    checks = META["svae_la.mmengine_checks"]
    assert checks["state_dict_holds_the_ema_weights"] and checks["ema_state_dict_holds_the_raw_weights"]
    ids, mask = their_inputs()
    tokens, token_mask = strip_official_bos(ids, mask)
    default = SentenceVAE.from_official(DIR / "svae_la_proj_iter_4.pth", LA)  # = their tools: state_dict
    raw = SentenceVAE.from_official(DIR / "svae_la_proj_iter_4.pth", LA, use_ema=False)
    with torch.no_grad():
        torch.testing.assert_close(default.encode(tokens, token_mask), OUT["svae_la_ema.vectors"], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(raw.encode(tokens, token_mask), OUT["svae_la_ema.vectors"], atol=1e-3)


def test_use_ema_needs_an_ema_state_dict():
    with pytest.raises(ValueError, match="use_ema=True but .*has no 'ema_state_dict'"):
        SentenceVAE.from_official(DIR / "svae_sum_state_dict.pth", SUM, use_ema=True)
    with pytest.raises(ValueError, match="use_ema=False but .*has no 'ema_state_dict'"):
        SentenceVAE.from_official(DIR / "svae_sum_state_dict.pth", SUM, use_ema=False)


# ---------------------------------------------------------------- their config forms
def test_their_dict_maps_every_key():
    c = official_config(LA)
    assert (c.vocab_size, c.hidden_size, c.num_heads, c.num_layers, c.max_tokens, c.dropout) == (48, 16, 2, 2, 16, 0.1)
    assert (c.fusion, c.embed_dim, c.pad_token_id, c.bos_token_id, c.eos_token_id) == ("weighted", 8, 1, 2, 2)
    assert official_config(SUM).fusion == "sum"


def test_official_preset_defaults_to_opt_ids():
    c = SentenceVAEConfig.official(vocab_size=50272)
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (1, 2, 2)


def write_their_yaml(folder: Path) -> Path:
    """Their layout: svae_base.yaml ← SVAE-768/svae_768_base.yaml ← svae_768_h2.yaml."""
    (folder / "SVAE-768").mkdir(parents=True)
    (folder / "svae_base.yaml").write_text(
        'device: "cuda"\ndtype: "fp32"\nlearnable_add: false\nload_ref_model: false\nref_model_dir: "model_repo/opt-125m"\n'
        "ref_model_dtype: null\nnum_hidden_layers: 1\nfinetune_embedding: true\nmodel_path: null\nmax_seq_len: 64\n"
        "batch_size: 128\nbase_lr: 0.0000001\nmax_iters: 300000\n")
    (folder / "SVAE-768" / "svae_768_base.yaml").write_text('__base__: !include ../svae_base.yaml\n\nref_model_dir: "model_repo/opt-125m"\n')
    (folder / "SVAE-768" / "svae_768_h2.yaml").write_text("__base__: !include ./svae_768_base.yaml\n\nnum_hidden_layers: 2\n")
    return folder / "SVAE-768" / "svae_768_h2.yaml"


def test_their_yaml_with_base_includes_and_the_opt_config(tmp_path):
    from transformers import OPTConfig

    path = write_their_yaml(tmp_path)
    opt = OPTConfig(vocab_size=50272, hidden_size=768, num_attention_heads=12, word_embed_proj_dim=768)
    c = official_config(path, backbone_config=opt)
    assert (c.num_layers, c.max_tokens, c.fusion, c.hidden_size, c.num_heads, c.vocab_size) == (2, 64, "sum", 768, 12, 50272)
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (1, 2, 2)


def test_their_yaml_without_the_opt_config_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"lacks hidden_size, vocab_size, num_attention_heads.*ref_model_dir='model_repo/opt-125m'.*backbone_config="):
        official_config(write_their_yaml(tmp_path))


def test_unknown_key_in_their_config_is_named():
    with pytest.raises(ValueError, match="unknown key.*num_hidden_layer\\b"):
        official_config({**SUM, "num_hidden_layer": 2})


def test_a_non_official_config_is_refused():
    with pytest.raises(ValueError, match="not the authors' architecture: norm_first=True"):
        SentenceVAE.from_official(DIR / "svae_sum_state_dict.pth", SentenceVAEConfig(vocab_size=48, hidden_size=16, num_heads=2))


# ---------------------------------------------------------------- their input layout
def test_their_layout_with_the_leading_bos_is_a_clear_error():
    model = SentenceVAE.from_official(DIR / "svae_sum_state_dict.pth", SUM)
    ids, mask = their_inputs()
    with pytest.raises(ValueError, match=r"start with the bos id 2.*strip_official_bos"):
        model.encode(ids, mask)


def test_strip_official_bos_refuses_rows_that_are_not_their_layout():
    ids, mask = their_inputs()
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3\] do not start with bos id 2"):
        strip_official_bos(ids[:, 1:], mask[:, 1:])
