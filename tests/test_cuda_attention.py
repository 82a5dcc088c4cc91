"""CUDA paths (run by `pytest -m cuda` and by scripts/gpu-check.sh; skipped without a GPU):
xformers vs SDPA on the inputs a real SentenceVAE decoder produces, in bf16 and fp16; the
capability check choosing xformers where it works; bf16 generation and GPU memory figures."""

from __future__ import annotations

import pytest
import torch

import graftlm.attention as attn
from graftlm.attention import attention, attention_backend

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TOLERANCE = {torch.bfloat16: dict(atol=2e-2, rtol=2e-2), torch.float16: dict(atol=2e-3, rtol=2e-3)}
TEXT = ("The quick brown fox jumps over the lazy dog. It was not amused, and said so! "
        "Then it left; the fox stayed behind, alone, for a while.")


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    attn.set_attention_backend("auto")
    attn._xformers_verdicts.clear()


def _vae(dtype: torch.dtype):
    """A SentenceVAE with OPT-125M's width and heads (head dim 64) on the GPU, random weights."""
    from graftlm.tokenization import ByteTokenizer
    from graftlm.vae import SentenceVAE, SentenceVAEConfig

    torch.manual_seed(0)
    cfg = SentenceVAEConfig.official(vocab_size=259, hidden_size=768, num_heads=12, num_layers=2, dropout=0.0,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return SentenceVAE(cfg).to("cuda", dtype).eval(), ByteTokenizer()


def _sentences(tok):
    from graftlm.segmenter import RegexSegmenter

    parts = RegexSegmenter(max_tokens=64, tokenizer=tok).split(TEXT)
    ids = [tok.encode(p) for p in parts]
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids], device="cuda")
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device="cuda").bool()
    return input_ids, mask


def _recorded_calls(vae, input_ids, mask):
    """Every (q, k, v, causal, key_padding_mask) the decoder passes to ``attention`` in one
    teacher-forced forward: the real inputs (padding, causal self-attention, cross-attention)."""
    calls = []
    real = attn.attention

    def spy(q, k, v, **kw):
        calls.append((q, k, v, kw.get("causal", False), kw.get("key_padding_mask")))
        return real(q, k, v, **kw)

    import graftlm.vae.layers as layers

    layers.attention = spy
    try:
        with torch.inference_mode(), attention_backend("sdpa"):
            vectors = vae.encode(input_ids, mask)
            calls.clear()  # only the decoder's calls
            vae.decode_logits(vectors, input_ids, mask)
    finally:
        layers.attention = real
    return calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_xformers_equals_sdpa_on_real_decoder_inputs(dtype):
    pytest.importorskip("xformers.ops")
    vae, tok = _vae(dtype)
    calls = _recorded_calls(vae, *_sentences(tok))
    assert calls, "the decoder made no attention call"
    for q, k, v, causal, pad in calls:
        with torch.inference_mode(), attention_backend("sdpa"):
            expected = attention(q, k, v, causal=causal, key_padding_mask=pad)
        with torch.inference_mode(), attention_backend("xformers"):
            out = attention(q, k, v, causal=causal, key_padding_mask=pad)
        torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_decoder_logits_agree_between_backends(dtype):
    pytest.importorskip("xformers.ops")
    vae, tok = _vae(dtype)
    ids, mask = _sentences(tok)
    with torch.inference_mode():
        vectors = vae.encode(ids, mask)
        with attention_backend("sdpa"):
            ref = vae.decode_logits(vectors, ids, mask).float()
        with attention_backend("xformers"):
            out = vae.decode_logits(vectors, ids, mask).float()
    scale = ref.abs().max()
    assert float((out - ref).abs().max() / scale) < (5e-2 if dtype == torch.bfloat16 else 5e-3)


def test_auto_picks_xformers_where_it_works():
    pytest.importorskip("xformers.ops")
    vae, tok = _vae(torch.bfloat16)
    ids, mask = _sentences(tok)
    with torch.inference_mode():
        vae.decode_logits(vae.encode(ids, mask), ids, mask)  # under "auto": the real calls are the trials
    assert attn._xformers_verdicts, "no xformers trial was made on CUDA"
    for key, ok in attn._xformers_verdicts.items():
        assert ok, f"xformers failed its trial for {key}"
        q = torch.zeros(1, 12, 3, 64, device="cuda", dtype=torch.bfloat16)
        causal, pad = "causal" in key[3], ("padding" in key[3])
        mask_arg = torch.ones(1, 3, dtype=torch.bool, device="cuda") if pad else None
        assert attn.resolved_backend(q, causal=causal, key_padding_mask=mask_arg) == "xformers"


def test_auto_uses_sdpa_on_cuda_without_xformers(monkeypatch):
    monkeypatch.setattr(attn, "_xformers_ops", lambda: None)
    q = torch.zeros(1, 2, 3, 8, device="cuda")
    assert attn.resolved_backend(q) == "sdpa"


def test_bf16_sentence_llm_generates_the_fixed_token_count_on_cuda():
    from transformers import OPTConfig, OPTForCausalLM

    from graftlm.bench import suite
    from graftlm.bench.models import Backbone
    from graftlm.evaluation.throughput import prompt_batch, sllm_runner
    from graftlm.tokenization import ByteTokenizer

    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=259, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                    max_position_embeddings=256, word_embed_proj_dim=64)
    bb = Backbone("tiny-opt", OPTForCausalLM(cfg).to("cuda", torch.bfloat16).eval(), ByteTokenizer())
    sllm = suite.build_sllm(bb, 1)
    ids = bb.tokenizer.encode(TEXT * 2)
    prompts = suite.prompt_segments(bb.tokenizer, prompt_batch(ids, 2, 40), sllm.vae.config, 8)
    assert sllm_runner(sllm, prompts, 24, 8)() == 2 * 24


def test_kv_cache_bytes_on_cuda_in_bf16_are_half_of_fp32():
    from transformers import OPTConfig, OPTForCausalLM

    from graftlm.evaluation.memory import backbone_prefill_cache, kv_cache_bytes

    cfg = OPTConfig(vocab_size=259, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                    max_position_embeddings=256, word_embed_proj_dim=64)
    x = torch.randint(3, 259, (1, 50))
    sizes = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = OPTForCausalLM(cfg).to("cuda", dtype).eval()
        sizes[dtype] = kv_cache_bytes(backbone_prefill_cache(model, x))  # CPU ids: moved to the model
    assert sizes[torch.float32] == 2 * 2 * 50 * 64 * 4
    assert sizes[torch.bfloat16] * 2 == sizes[torch.float32]


def test_peak_memory_is_the_cuda_allocator_peak():
    from graftlm.bench.device_parts import measure_peak

    def run() -> int:
        x = torch.empty(64, 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
        del x
        return 1

    m = measure_peak(run, torch.device("cuda"))
    assert m["measure"] == "cuda max_memory_allocated"
    assert m["working_bytes"] >= 64 * 2**20
