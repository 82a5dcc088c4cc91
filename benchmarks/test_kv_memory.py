"""KV-cache bytes per context token after prefilling real English text, backbone vs SentenceLLM."""

from __future__ import annotations

import pytest

from graftlm.bench import suite
from graftlm.evaluation.memory import track_peak_memory


@pytest.mark.parametrize("tokens", [1024, 4096, 16384])
def test_kv_bytes_per_token(benchmark, backbone, tokens):
    sllm = suite.build_sllm(backbone, 1)
    benchmark.group = f"kv {backbone.name}"
    with track_peak_memory() as mem:
        rows = benchmark.pedantic(suite.kv_rows, args=(backbone,), kwargs=dict(
            context_tokens=(tokens,), segmenters=(None, 8, 16), sllm=sllm, log=lambda _: None),
            rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    benchmark.extra_info["peak_rss"] = mem.peak_rss
    for r in rows:
        key = f"{r['side']} {r.get('segmenter', '')}".strip()
        benchmark.extra_info[f"{key} KB/token"] = r["bytes_per_token"] / 1024 if r.get("bytes") else None
