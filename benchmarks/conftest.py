"""pytest-benchmark suites: `pytest benchmarks/ --benchmark-only [--benchmark-json out.json]`.

Options (all also readable from the environment, GRAFTLM_BENCH_*):
  --bench-backbones  comma list or "all" (default: opt-125m,smollm2-135m; OPT-1.3B is slow on a CPU)
  --bench-batches    comma list (default: 1,8)
  --bench-tokens     output tokens per prompt (default: 256)
  --bench-threads    torch threads (default: 2)
Figures (tokens/s, MAC bound, KV bytes/token) go into each benchmark's ``extra_info``.
"""

from __future__ import annotations

import os

import pytest
import torch

from graftlm.bench.models import BACKBONES, build_backbone


def pytest_addoption(parser):
    g = parser.getgroup("graftlm-bench")
    g.addoption("--bench-backbones", default=os.environ.get("GRAFTLM_BENCH_BACKBONES", "opt-125m,smollm2-135m"))
    g.addoption("--bench-batches", default=os.environ.get("GRAFTLM_BENCH_BATCHES", "1,8"))
    g.addoption("--bench-tokens", type=int, default=int(os.environ.get("GRAFTLM_BENCH_TOKENS", "256")))
    g.addoption("--bench-threads", type=int, default=int(os.environ.get("GRAFTLM_BENCH_THREADS", "2")))


def _backbones(config) -> list[str]:
    raw = config.getoption("--bench-backbones")
    names = list(BACKBONES) if raw == "all" else [n.strip() for n in raw.split(",") if n.strip()]
    bad = [n for n in names if n not in BACKBONES]
    if bad:
        raise pytest.UsageError(f"--bench-backbones: unknown {bad}; choose from {list(BACKBONES)} or 'all'")
    return names


def pytest_generate_tests(metafunc):
    if "backbone_name" in metafunc.fixturenames:
        metafunc.parametrize("backbone_name", _backbones(metafunc.config), scope="session")
    if "batch" in metafunc.fixturenames:
        batches = [int(b) for b in metafunc.config.getoption("--bench-batches").split(",")]
        metafunc.parametrize("batch", batches)


@pytest.fixture(scope="session", autouse=True)
def _threads(pytestconfig):
    torch.set_num_threads(pytestconfig.getoption("--bench-threads"))


@pytest.fixture(scope="session")
def new_tokens(pytestconfig) -> int:
    return pytestconfig.getoption("--bench-tokens")


_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def backbone(backbone_name):
    """The backbone (one held at a time: OPT-1.3B alone is 5.3 GB in fp32)."""
    if backbone_name not in _CACHE:
        _CACHE.clear()
        _CACHE[backbone_name] = build_backbone(backbone_name)
    return _CACHE[backbone_name]


@pytest.fixture(scope="session")
def sentence_len(backbone) -> int:
    """The mean segment length of the default segmenter on pydoc text, rounded."""
    from graftlm.bench.suite import measure_segments

    rows = measure_segments(backbone.name, backbone.tokenizer, sources=("pydoc",))
    return max(1, round(rows[0]["mean"]))
