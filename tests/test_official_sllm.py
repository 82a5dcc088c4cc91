"""The authors' SentenceLLM file (made by THEIR code on a tiny random OPT, transformers 4.46, see
tests/fixtures/README) loaded onto a transformers OPT: hidden states, termination logits, the
next-sentence logits and greedy tokens match; their eager run is the leaky one, their SDPA run
the causal one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import OPTConfig, OPTForCausalLM

from graftlm.sllm.leak import LeakyAttentionWarning, set_attention
from graftlm.sllm.model import SentenceLLM
from graftlm.sllm.official import strip_official_layout

from fixtures.tiny_models import one_thread  # noqa: F401

DIR = Path(__file__).parent / "fixtures" / "official"
META = json.loads((DIR / "fixtures.json").read_text())
OUT = load_file(str(DIR / "outputs.safetensors"))
# their SentenceLLM constructor kwargs as make_fixtures.py passed them (the rest come from the OPT)
CONFIG = dict(svae_learnable_add=True, svae_num_hidden_layers=1, max_sentence_len=16)
TOL = dict(atol=1e-5, rtol=1e-5)


def opt() -> OPTForCausalLM:
    torch.manual_seed(0)  # random weights: everything their model uses comes from the file
    return OPTForCausalLM(OPTConfig(**META["sllm.opt_config"])).eval()


@pytest.fixture(scope="module")
def sllm() -> SentenceLLM:
    return SentenceLLM.from_official(DIR / "sllm_state_dict.pth", CONFIG, backbone=opt())


def batch(name: str):
    return strip_official_layout(OUT[f"sllm_{name}.sentence_mask"], OUT[f"sllm_{name}.sentence_toks"],
                                 OUT[f"sllm_{name}.tok_mask"])


def run(sllm, name: str, attention: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeakyAttentionWarning)
        set_attention(sllm, attention)
    ids, tm, sm = batch(name)
    with torch.no_grad():
        return sllm(ids, tm, sm), sm


def test_config_comes_from_their_kwargs_and_the_opt():
    model = SentenceLLM.from_official(DIR / "sllm_state_dict.pth", CONFIG, backbone=opt())
    c = model.vae.config
    assert (c.hidden_size, c.embed_dim, c.num_heads, c.num_layers, c.fusion, c.max_tokens) == (16, 8, 2, 1, "weighted", 16)
    assert model.graft_options["attention"] == "causal"
    assert model.body.final_layer_norm is None and model.body.project_in is None  # their model never ran them


@pytest.mark.parametrize("name", ["full", "padded"])
def test_causal_matches_their_code_under_sdpa(sllm, name):
    out, sm = run(sllm, name, "causal")
    torch.testing.assert_close(out.hidden_states[sm], OUT[f"sllm_sdpa_{name}.hidden_states"][sm], **TOL)
    torch.testing.assert_close(out.termination_logits[sm], OUT[f"sllm_sdpa_{name}.termination_logits"][sm], **TOL)


def test_bidirectional_matches_their_code_under_eager(sllm):
    out, sm = run(sllm, "full", "bidirectional")
    torch.testing.assert_close(out.hidden_states, OUT["sllm_eager_full.hidden_states"], **TOL)
    torch.testing.assert_close(out.termination_logits, OUT["sllm_eager_full.termination_logits"], **TOL)


def test_their_leaky_code_also_attends_to_empty_slots(sllm):
    """Row 0 of the padded batch fills every slot and matches; row 1 has empty slots, which their
    unmasked call let every position see and graftlm masks."""
    out, sm = run(sllm, "padded", "bidirectional")
    ref = OUT["sllm_eager_padded.hidden_states"]
    assert bool(sm[0].all()) and not bool(sm[1].all())
    torch.testing.assert_close(out.hidden_states[0], ref[0], **TOL)
    assert (out.hidden_states[1][sm[1]] - ref[1][sm[1]]).abs().max() > 1e-3


def test_the_leak_is_in_their_code():
    assert META["sllm.eager_past_change_when_sentence_3_changes"] > 1e-2
    assert META["sllm.sdpa_past_change_when_sentence_3_changes"] == 0.0


@pytest.mark.parametrize("attention, theirs", [("causal", "sdpa"), ("bidirectional", "eager")])
def test_next_sentence_logits_match_their_decoder(sllm, attention, theirs):
    out, sm = run(sllm, "full", attention)
    ids, tm, _ = batch("full")
    ref = OUT[f"sllm_{theirs}_full.next_sentence_logits"]  # [b, k] = sentence k+1 from position k
    for b in range(ids.shape[0]):
        n = int(sm[b].sum())
        with torch.no_grad():
            logits = sllm.vae.decode_logits(sllm.sentence_vectors(out.hidden_states[b, : n - 1]), ids[b, 1:n], tm[b, 1:n])
        real = OUT["sllm_full.tok_mask"][b, 1:n].bool()  # their positions: </s> + tokens
        torch.testing.assert_close(logits[:, : real.shape[1]][real], ref[b, : n - 1][real], **TOL)


def test_greedy_tokens_after_the_last_sentence_match_their_decoder(sllm):
    out, sm = run(sllm, "full", "bidirectional")
    expected = META["sllm_eager_full.greedy_after_last"]  # theirs end with eos
    assert len({len(r) for r in expected}) > 1
    with torch.no_grad():
        got = sllm.vae.generate(sllm.sentence_vectors(out.hidden_states[:, -1]), 16)
    assert got == [row[:-1] for row in expected]


def test_wrong_backbone_names_the_file_keys():
    small = OPTConfig(**{**META["sllm.opt_config"], "num_hidden_layers": 1})
    model = OPTForCausalLM(small)
    with pytest.raises(ValueError, match=r"unexpected keys: llm_layers\.1\..*backbone is the OPT size"):
        SentenceLLM.from_official(DIR / "sllm_state_dict.pth", CONFIG, backbone=model)
    assert model.model.decoder.embed_tokens is not None  # refused before anything was stripped


def test_non_opt_backbone_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=48, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32))
    with pytest.raises(TypeError, match="only exists on OPT"):
        SentenceLLM.from_official(DIR / "sllm_state_dict.pth", CONFIG, backbone=llama)


def test_their_layout_is_converted_and_checked():
    ids, tm, sm = batch("padded")
    assert not tm[1, 3:].any() and bool(tm[1, :3].any(-1).all())  # empty slots are all padding
    with pytest.raises(ValueError, match="does not start with bos id 2"):
        strip_official_layout(OUT["sllm_full.sentence_mask"], OUT["sllm_full.sentence_toks"][..., 1:],
                              OUT["sllm_full.tok_mask"][..., 1:])


def test_their_sllm_yaml_maps_with_the_opt_config(tmp_path):
    """sllm_base.yaml ← SLLM-350m/sllm_350m_base.yaml ← sllm_350m_h1_all.yaml, OPT-350M's config:
    their SLLM script passes word_embed_proj_dim (512 → project_in to 1024)."""
    from graftlm.vae.official import official_config

    (tmp_path / "SLLM-350m").mkdir()
    (tmp_path / "sllm_base.yaml").write_text(
        'device: "cuda"\ndtype: "fp32"\nsvae:\n  learnable_add: false\n  load_ref_model: false\n'
        '  ref_model_dir: "model_repo/opt-125m"\n  ref_model_dtype: null\n  finetune_embedding: true\n  model_path: null\n'
        'llm:\n  ref_model_dir: "model_repo/opt-125m"\n  ref_model_dtype: null\n  finetune_layers: -1\n'
        "finetune_svae: true\nmax_sen_len: 64\nmax_sen_num: 64\nbatch_size: 1\nbase_lr: 0.000001\n")
    (tmp_path / "SLLM-350m" / "sllm_350m_base.yaml").write_text(
        '__base__: !include ../sllm_base.yaml\n\nsvae:\n  ref_model_dir: "model_repo/opt-350m"\n\nllm:\n  ref_model_dir: "model_repo/opt-350m"\n')
    (tmp_path / "SLLM-350m" / "sllm_350m_h1_all.yaml").write_text(
        "__base__: !include ./sllm_350m_base.yaml\n\nsvae:\n  num_hidden_layers: 1\n\nllm:\n  finetune_layers: -1\n")
    opt350 = OPTConfig(vocab_size=50272, hidden_size=1024, num_attention_heads=16, word_embed_proj_dim=512,
                       num_hidden_layers=24, ffn_dim=4096)
    c = official_config(tmp_path / "SLLM-350m" / "sllm_350m_h1_all.yaml", backbone_config=opt350)
    assert (c.hidden_size, c.embed_dim, c.num_heads, c.num_layers, c.max_tokens, c.fusion) == (1024, 512, 16, 1, 64, "sum")
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id, c.vocab_size) == (1, 2, 2, 50272)


def test_their_layout_fed_to_the_sllm_is_a_clear_error(sllm):
    with pytest.raises(ValueError, match="strip_official_layout"):
        sllm(OUT["sllm_full.sentence_toks"], OUT["sllm_full.tok_mask"].bool(), OUT["sllm_full.sentence_mask"].bool())
