"""Throughput runners: what they generate and how they are called (no timing assertions)."""

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from graftlm.evaluation.throughput import (
    hf_generate_runner,
    lean_generate,
    lean_loop_runner,
    prompt_batch,
    time_interleaved,
)


@pytest.fixture(scope="module")
def tiny_opt():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                    max_position_embeddings=64, word_embed_proj_dim=16)
    return OPTForCausalLM(cfg).eval()


def test_lean_loop_matches_hf_greedy_generate(tiny_opt):
    x = torch.randint(3, 50, (2, 5))
    with torch.inference_mode():
        ref = tiny_opt.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                min_new_tokens=9, max_new_tokens=9, pad_token_id=1)[:, 5:]
    assert torch.equal(lean_generate(tiny_opt, x, 9), ref)


def test_runners_report_batch_times_new_tokens(tiny_opt):
    x = torch.randint(3, 50, (3, 4))
    assert lean_loop_runner(tiny_opt, x, 6)() == 18
    assert hf_generate_runner(tiny_opt, x, 6)() == 18


def test_prompt_batch_uses_different_windows():
    x = prompt_batch(list(range(100)), 2, 5)
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_prompt_batch_rejects_too_little_text():
    with pytest.raises(ValueError, match="tokens of text"):
        prompt_batch(list(range(9)), 2, 5)


def test_interleaved_timing_warms_up_once_then_runs_each_repeat():
    calls = {"a": 0, "b": 0, "warm": 0}

    def make(name):
        def run():
            calls[name] += 1
            return 1
        return run

    out = time_interleaved({"a": (make("a"), make("warm")), "b": (make("b"), None)}, repeats=3)
    assert calls == {"a": 3, "b": 4, "warm": 1}
    assert len(out["a"].seconds) == 3
