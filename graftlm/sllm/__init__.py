"""Sentence-level LLMs: `graft` a SentenceVAE onto a decoder-only backbone."""

from graftlm.sllm.generation import SentenceGenerationOutput
from graftlm.sllm.model import SentenceLLM, SentenceLLMOutput, graft, load

__all__ = ["SentenceGenerationOutput", "SentenceLLM", "SentenceLLMOutput", "graft", "load"]
