"""A SentenceLLM reads and continues a document > 4x its backbone's position table."""

from __future__ import annotations

import pytest

from graftlm.bench.long_context import long_context_rows
from graftlm.bench.models import build_backbone


@pytest.fixture(scope="module")
def opt125m():
    return build_backbone("opt-125m")


def test_long_context_opt125m(benchmark, opt125m):
    benchmark.group = "long context"
    rows = benchmark.pedantic(long_context_rows, args=(opt125m,), kwargs=dict(log=lambda _: None),
                              rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    sllm_row = rows[-1]
    assert sllm_row["tokens"] >= 4 * sllm_row["max_positions"]
    assert sllm_row["positions"] <= sllm_row["max_positions"]
