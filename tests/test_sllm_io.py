"""save_pretrained / graftlm.load: JSON + safetensors, backbone as weights or as a reference."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import graftlm
from graftlm import graft
from graftlm.tokenization import ByteTokenizer

from fixtures.tiny_models import TEXTS, one_thread, paragraphs_batch, tiny_llama, tiny_opt, tiny_vae  # noqa: F401

FIXED = dict(ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=4, max_new_sentences=2)


def _train_step(sllm) -> None:
    opt = torch.optim.SGD([p for p in sllm.parameters() if p.requires_grad], lr=0.5)
    sllm(**paragraphs_batch(TEXTS).as_model_inputs()).loss.backward()
    opt.step()


def _same_behaviour(a, b) -> None:
    batch = paragraphs_batch(TEXTS).as_model_inputs()
    with torch.no_grad():
        assert torch.allclose(a(**batch).loss, b(**batch).loss, atol=1e-6)
    assert a.generate(TEXTS, **FIXED) == b.generate(TEXTS, **FIXED)


def _keys(path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return set(f.keys())


def test_weights_round_trip(tmp_path):
    sllm = graft(tiny_opt(hidden=48), tiny_vae(hidden=32), tokenizer=ByteTokenizer())
    _train_step(sllm)
    sllm.eval().save_pretrained(tmp_path, save_backbone="weights")
    assert {p.name for p in tmp_path.iterdir()} >= {"sllm_config.json", "sllm.safetensors", "vae"}
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt*"))
    loaded = graftlm.load(tmp_path).eval()
    assert isinstance(loaded.tokenizer, ByteTokenizer)
    _same_behaviour(sllm, loaded)


def test_from_pretrained_is_load(tmp_path):
    sllm = graft(tiny_opt(hidden=48), tiny_vae(hidden=32), tokenizer=ByteTokenizer())
    _train_step(sllm)
    sllm.eval().save_pretrained(tmp_path, save_backbone="weights")
    _same_behaviour(sllm, graftlm.SentenceLLM.from_pretrained(tmp_path).eval())


def test_reference_saves_only_trained_body_weights(tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    tiny_llama().save_pretrained(tmp_path / "backbone")  # a local "hub" checkpoint
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "backbone")
    sllm = graft(model, tiny_vae(), tokenizer=ByteTokenizer(), lora=LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    _train_step(sllm)
    sllm.eval().save_pretrained(tmp_path / "sllm")  # default: by reference
    # the only trained body weights are LoRA's, saved in peft's own file, so no body weight is left here
    assert not {k for k in _keys(tmp_path / "sllm" / "sllm.safetensors") if k.startswith("body.")}
    lora_keys = _keys(tmp_path / "sllm" / "adapter_model.safetensors")
    assert lora_keys and all("lora_" in k for k in lora_keys)
    config = json.loads((tmp_path / "sllm" / "sllm_config.json").read_text())
    assert config["backbone"]["reference"] == str(tmp_path / "backbone")
    loaded = graftlm.load(tmp_path / "sllm").eval()
    assert sum(p.requires_grad for p in loaded.body.parameters()) == len(lora_keys)
    _same_behaviour(sllm, loaded)


def test_reference_without_a_source_is_refused(tmp_path):
    sllm = graft(tiny_opt(), tiny_vae())
    with pytest.raises(ValueError, match="save_backbone='weights'"):
        sllm.save_pretrained(tmp_path)


def test_bad_save_mode_and_missing_directory(tmp_path):
    sllm = graft(tiny_opt(), tiny_vae())
    with pytest.raises(ValueError, match="save_backbone must be one of"):
        sllm.save_pretrained(tmp_path, save_backbone="pickle")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        graftlm.load(tmp_path / "nothing")
