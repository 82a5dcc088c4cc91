"""graftlm: turn any decoder-only LLM into a sentence-level LLM (SentenceVAE, arXiv 2408.00655).

The public names are imported lazily so that `import graftlm` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Segmenter": "graftlm.interfaces",
    "SentenceEncoder": "graftlm.interfaces",
    "SentenceDecoder": "graftlm.interfaces",
    "TerminationHead": "graftlm.interfaces",
    "RegexSegmenter": "graftlm.segmenter",
    "SegmentedBatch": "graftlm.segmenter",
    "segment_and_tokenize": "graftlm.segmenter",
    "split_paragraph": "graftlm.segmenter",
    "ByteTokenizer": "graftlm.tokenization",
    "SentenceVAE": "graftlm.vae",
    "SentenceVAEConfig": "graftlm.vae",
    "graft": "graftlm.sllm",
    "SentenceLLM": "graftlm.sllm",
    "load": "graftlm.sllm",
    "hookimpl": "graftlm.plugins",
    "evaluate": "graftlm.evaluation",
    "EvaluationReport": "graftlm.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graftlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
