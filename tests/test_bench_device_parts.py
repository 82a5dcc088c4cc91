"""Peak-memory and attention-backend rows of the bench on a tiny grafted OPT (CPU; the xformers
path with a stand-in operator, as on a GPU without one)."""

from __future__ import annotations

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

import graftlm.attention as attn
from graftlm.bench import device_parts
from graftlm.bench.models import Backbone
from graftlm.tokenization import ByteTokenizer

from fixtures.fake_xformers import install_fake_xformers


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=259, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                    max_position_embeddings=256, word_embed_proj_dim=16)
    return Backbone("tiny-opt", OPTForCausalLM(cfg).eval(), ByteTokenizer())


@pytest.fixture(autouse=True)
def _one_thread_and_auto_backend():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    attn.set_attention_backend("auto")
    attn._xformers_verdicts.clear()


def test_weight_bytes_count_shared_storage_once():
    lin = torch.nn.Linear(4, 4, bias=False)
    model = torch.nn.Sequential(lin, lin)
    assert device_parts.weight_bytes(model) == 16 * 4


def test_peak_memory_rows_cover_every_method_and_batch(backbone):
    rows = device_parts.peak_memory_rows(backbone, batches=(1, 2), new_tokens=6, sentence_len=4, prompt_tokens=12,
                                         log=lambda _: None)
    assert [(r["batch"], r["method"]) for r in rows] == [
        (b, m) for b in (1, 2) for m in ("hf_generate", "lean_loop", "sllm-H1")]
    for r in rows:
        assert r["tokens"] == r["batch"] * 6
        assert r["measure"].startswith("peak RSS")  # CPU: no CUDA allocator
        assert r["peak_bytes"] > 0 and r["working_bytes"] >= 0
    sllm = next(r for r in rows if r["method"] == "sllm-H1")
    assert sllm["weights_bytes"] > rows[0]["weights_bytes"]  # the SentenceVAE's weights on top


def test_attention_rows_without_xformers_say_why(backbone):
    rows = device_parts.attention_rows(backbone, sentence_len=4, batches=(1,), new_tokens=8, prompt_tokens=12,
                                       repeats=1, log=lambda _: None)
    sdpa, xf = rows
    assert sdpa["backend"] == "sdpa" and sdpa["tokens_per_s"] > 0 and sdpa["auto_picks"] == "sdpa"
    assert xf["backend"] == "xformers" and "not measured" in xf["note"]


def _stand_in_xformers(monkeypatch, fail: bool = False):
    install_fake_xformers(monkeypatch, fail=fail)
    monkeypatch.setattr(device_parts, "xformers_status", lambda device: None)


def test_attention_rows_compare_backends_when_xformers_runs(backbone, monkeypatch):
    _stand_in_xformers(monkeypatch)
    rows = device_parts.attention_rows(backbone, sentence_len=4, batches=(2,), new_tokens=8, prompt_tokens=12,
                                       repeats=1, log=lambda _: None)
    assert [r["backend"] for r in rows] == ["sdpa", "xformers"]
    xf = rows[1]
    assert xf["vs_sdpa"] > 0
    assert xf["max_abs_diff"] < 1e-4 and xf["argmax_agree"] == 1.0  # the stand-in is exact
    assert xf["auto_picks"] == "xformers" and all(xf["auto_verdicts"].values())


def test_attention_rows_report_a_failing_xformers_instead_of_crashing(backbone, monkeypatch):
    _stand_in_xformers(monkeypatch, fail=True)
    rows = device_parts.attention_rows(backbone, sentence_len=4, batches=(1,), new_tokens=8, prompt_tokens=12,
                                       repeats=1, log=lambda _: None)
    assert rows[0]["backend"] == "sdpa" and rows[0]["auto_picks"] == "sdpa"
    assert "forced xformers failed: NotImplementedError" in rows[1]["note"]
