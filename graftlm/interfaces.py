"""The four contracts of a sentence-level LLM.

Everything in graftlm implements one of these, and `graftlm.graft` only talks to them, so any
piece can be swapped (another segmenter, an encoder from a different library, ...).

Conventions shared by all of them:

* A *segment* (the paper says "sentence") is a piece of text; segments concatenate back to the
  text exactly.
* Token tensors are ``torch.long``; masks are ``torch.bool`` (an int 0/1 mask is accepted and
  converted), ``True`` marks a real token.
* Sentence token ids never contain bos/eos: the decoder adds bos in front of its input and
  eos after its target itself. Padding is on the right.
* ``B`` = batch (number of segments or paragraphs), ``L`` = tokens per segment, ``S`` =
  segments per paragraph, ``h`` = the sentence-vector width.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch


@runtime_checkable
class Segmenter(Protocol):
    """Splits text into segments, losslessly."""

    def split(self, text: str) -> list[str]:
        """Return segments with ``"".join(segments) == text`` for every input.

        The empty string gives ``[]``. No segment is empty. Whitespace after a cut stays with the
        preceding segment. A segment longer than the segmenter's token budget is split into
        several, never truncated.
        """
        ...


@runtime_checkable
class SentenceEncoder(Protocol):
    """Compresses each segment's tokens into one vector."""

    hidden_size: int

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids`` (B, L) long and ``attention_mask`` (B, L) bool → (B, h) float.

        Padding positions (mask False) have no influence on the result. A row whose mask is all
        False is an empty segment and is rejected with ``ValueError``.
        """
        ...


@runtime_checkable
class SentenceDecoder(Protocol):
    """Expands one vector back into a segment's tokens; sees nothing but that vector."""

    hidden_size: int

    def decode_logits(
        self, sentence_vectors: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing. ``sentence_vectors`` (B, h); ``input_ids``/``attention_mask`` (B, L).

        Returns logits (B, L + 1, V): position i predicts token i of the segment and position
        ``length`` predicts eos. Causal: logits at i depend only on the vector and tokens < i.
        """
        ...

    def generate(
        self, sentence_vectors: torch.Tensor, max_new_tokens: int = 64, **sampling
    ) -> list[list[int]]:
        """(B, h) → one token list per row, without bos/eos; each row stops at its own eos."""
        ...


@runtime_checkable
class TerminationHead(Protocol):
    """Says, from the backbone's hidden state at a sentence position, whether another follows."""

    def __call__(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., d) → logits (..., 2): index 1 = another sentence follows, 0 = stop."""
        ...


@runtime_checkable
class StreamingGenerator(Protocol):
    """What `SentenceLLM.stream` returns: an iterator of per-step batches of new segments."""

    def __iter__(self) -> Iterator[list[str | None]]: ...
