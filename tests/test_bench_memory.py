"""KV bytes counted from real cache tensors, and peak-memory tracking."""

import subprocess
import sys

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from graftlm.evaluation.memory import backbone_prefill_cache, cache_length, kv_cache_bytes


@pytest.fixture(scope="module")
def tiny_opt():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, ffn_dim=32, num_attention_heads=2,
                    max_position_embeddings=40, word_embed_proj_dim=16)
    return OPTForCausalLM(cfg).eval()


def test_kv_bytes_after_prefill_equal_keys_and_values_of_every_layer(tiny_opt):
    n = 12
    cache = backbone_prefill_cache(tiny_opt, torch.randint(3, 50, (1, n)))
    cfg = tiny_opt.config
    assert kv_cache_bytes(cache) == 2 * cfg.num_hidden_layers * n * cfg.hidden_size * 4


def test_cache_length_is_the_number_of_prefilled_tokens(tiny_opt):
    cache = backbone_prefill_cache(tiny_opt, torch.randint(3, 50, (1, 7)))
    assert cache_length(cache) == 7


def test_kv_bytes_counts_a_shared_tensor_once():
    t = torch.zeros(2, 3, 4)
    assert kv_cache_bytes([(t, t)]) == t.numel() * 4


def test_unknown_cache_type_is_a_type_error():
    with pytest.raises(TypeError, match="cache"):
        kv_cache_bytes(object())


def test_prefill_past_learned_positions_is_rejected(tiny_opt):
    with pytest.raises(ValueError, match="positions"):
        backbone_prefill_cache(tiny_opt, torch.randint(3, 50, (1, 41)))


_PEAK_PROBE = """
import torch
from graftlm.evaluation.memory import track_peak_memory
with track_peak_memory() as mem:
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del x
print("lifetime" if mem.rss_is_lifetime else mem.rss_increase)
"""


def test_peak_rss_sees_a_large_allocation():
    # a fresh interpreter: in this one, memory an earlier test freed (kept resident by the
    # allocator) can serve the allocation without raising the RSS at all
    out = subprocess.run([sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, check=True)
    increase = out.stdout.strip().splitlines()[-1]
    if increase == "lifetime":
        pytest.skip("this kernel cannot reset the peak RSS")
    assert int(increase) >= 48 * 2**20
