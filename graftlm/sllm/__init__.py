"""Sentence-level LLMs: `graft` a SentenceVAE onto a decoder-only backbone."""

from graftlm.sllm.generation import SentenceGenerationOutput
from graftlm.sllm.graft import graft
from graftlm.sllm.io import load
from graftlm.sllm.model import SentenceLLM, SentenceLLMOutput

__all__ = ["SentenceGenerationOutput", "SentenceLLM", "SentenceLLMOutput", "graft", "load"]
