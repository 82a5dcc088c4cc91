"""Lossless segmentation of text into "sentences", and batching them into padded tensors.

`RegexSegmenter.split` works in three passes over a text:

1. **cut** where the rule says (``rule="semantic"`` by default, ``"paper"`` for the authors'
   rule, or a custom ``pattern``; see `graftlm.segmentation_rules`), the whitespace at a cut going
   to the following segment (``whitespace="following"``, the default except for the paper rule);
2. **budget**: a segment with more than ``max_tokens`` tokens is split into pieces of at most
   ``max_tokens`` tokens, preferring cuts after whitespace; nothing is ever truncated;
3. **merge** (only with ``min_tokens``): a segment shorter than ``min_tokens`` absorbs the
   segments that follow it, as long as the merged piece stays within ``max_tokens`` tokens.

Every pass only moves cut positions, so ``"".join(segmenter.split(text)) == text`` always holds
and no segment is empty. Unlike the authors' collator, text after the last punctuation mark is
kept as a final segment.

`segment_and_tokenize` turns a batch of paragraphs into the ``(B, S, T)`` tensors the
SentenceLLM trains on (`SegmentedBatch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from graftlm.interfaces import Segmenter
from graftlm.segmentation_rules import (
    TokenCounter,
    atom_end,
    check_rule,
    compile_pattern,
    paragraph_break_between,
    place_cuts,
    raw_cuts,
    splits_crlf,
)

__all__ = ["RegexSegmenter", "SegmentedBatch", "segment_and_tokenize", "split_paragraph"]


class RegexSegmenter:
    """Cuts text into clauses at punctuation, within a token budget; lossless.

    Args:
        max_tokens: most tokens per segment (≥ 1). Longer segments are split, never truncated.
            The one exception: a single character (or ``\\r\\n``) that alone has more tokens than
            ``max_tokens`` is kept whole as its own segment, since a character is never split.
            With UTF-8 byte counting that needs ``max_tokens < 4``.
        min_tokens: if set (1 ≤ min_tokens ≤ max_tokens), short segments are merged forward until
            they reach ``min_tokens`` tokens or the next merge would pass ``max_tokens``. Merging
            never crosses a paragraph break (a blank line, ``\\n\\n``): a paragraph's last
            clause and the next paragraph's first clause are different units of text, and keeping
            the break at a segment boundary keeps paragraph structure visible to the model.
        tokenizer: HF-like tokenizer used to count tokens (``tokenizer(texts,
            add_special_tokens=False)["input_ids"]``). ``None`` counts UTF-8 bytes, which is
            exactly what `graftlm.ByteTokenizer` produces.
        pattern: a custom regular expression (str or compiled); a cut goes after each match,
            replacing ``rule``. ``None``: the rule decides.
        rule: ``"semantic"`` (default: no cut inside numbers, dotted names, URLs, paths or after
            common abbreviations) or ``"paper"`` (the authors' rule, for reproduction and their
            checkpoints; `RegexSegmenter.paper`).
        whitespace: where the whitespace at a cut goes: ``"following"`` (default; the next segment
            starts with it, as BPE attaches a space to the next word) or ``"preceding"`` (the
            paper's convention, the default of ``rule="paper"``).
    """

    def __init__(
        self,
        max_tokens: int = 64,
        min_tokens: int | None = None,
        tokenizer: Any = None,
        pattern: str | re.Pattern[str] | None = None,
        rule: str = "semantic",
        whitespace: str | None = None,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens must be an int, got {type(max_tokens).__name__}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if min_tokens is not None:
            if isinstance(min_tokens, bool) or not isinstance(min_tokens, int):
                raise TypeError(f"min_tokens must be an int or None, got {type(min_tokens).__name__}")
            if not 1 <= min_tokens <= max_tokens:
                raise ValueError(
                    f"min_tokens must be between 1 and max_tokens={max_tokens}, got {min_tokens}; "
                    "pass min_tokens=None to disable merging"
                )
        self.max_tokens = max_tokens
        self.min_tokens = min_tokens
        self.tokenizer = tokenizer
        self.pattern = compile_pattern(pattern)
        self.whitespace = check_rule(rule, whitespace)
        self.rule = rule
        self._counter = TokenCounter(tokenizer)

    @classmethod
    def paper(cls, max_tokens: int = 64, tokenizer: Any = None, **kwargs: Any) -> RegexSegmenter:
        """The authors' rule and whitespace convention (cut after any punctuation, whitespace kept
        with the preceding segment), for reproducing the paper and for their checkpoints."""
        return cls(max_tokens=max_tokens, tokenizer=tokenizer, rule="paper", **kwargs)

    def settings(self) -> dict[str, Any]:
        """The options that decide the segments (JSON-serialisable; the tokenizer excluded)."""
        return {"max_tokens": self.max_tokens, "min_tokens": self.min_tokens, "rule": self.rule,
                "whitespace": self.whitespace, "pattern": None if self.pattern is None else self.pattern.pattern}

    def __repr__(self) -> str:
        pattern = "" if self.pattern is None else f", pattern={self.pattern.pattern!r}"
        return (
            f"RegexSegmenter(max_tokens={self.max_tokens}, min_tokens={self.min_tokens}, "
            f"tokenizer={type(self.tokenizer).__name__ if self.tokenizer is not None else None}, "
            f"rule={self.rule!r}, whitespace={self.whitespace!r}{pattern})"
        )

    def split(self, text: str) -> list[str]:
        """Segments of ``text``: ``"".join(result) == text``, none empty, ``""`` → ``[]``."""
        if not isinstance(text, str):
            raise TypeError(f"RegexSegmenter.split expects a str, got {type(text).__name__}")
        if not text:
            return []
        clauses = _slice(text, place_cuts(text, raw_cuts(text, self.rule, self.pattern), self.whitespace))
        counted = self._within_budget(clauses)
        if self.min_tokens is not None:
            counted = self._merge_short(counted)
        return [segment for segment, _ in counted]

    # -- pass 2: token budget -------------------------------------------------------------------

    def _within_budget(self, clauses: list[str]) -> list[tuple[str, int]]:
        """Each clause with its token count, over-long clauses split into pieces that fit."""
        result = []
        for clause, n_tokens in zip(clauses, self._counter.counts(clauses)):
            if n_tokens <= self.max_tokens:
                result.append((clause, n_tokens))
            else:
                result.extend(self._split_long(clause, n_tokens))
        return result

    def _split_long(self, text: str, n_tokens: int) -> list[tuple[str, int]]:
        """Greedy left to right: each piece is the longest prefix that fits, backed off to whitespace.

        Costs O(log window) tokenizer calls per piece, each on about ``max_tokens`` tokens of text,
        so a run-on sentence of n tokens costs O(n log max_tokens) tokenizer work, not O(n²).
        """
        chars_per_token = len(text) / n_tokens
        pieces = []
        start = 0
        while start < len(text):
            end = self._longest_fitting_end(text, start, chars_per_token)
            end = self._back_off_to_whitespace(text, start, end)
            piece = text[start:end]
            pieces.append((piece, self._counter.count(piece)))
            start = end
        return pieces

    def _fits(self, text: str) -> bool:
        return self._counter.count(text) <= self.max_tokens

    def _longest_fitting_end(self, text: str, start: int, chars_per_token: float) -> int:
        """Largest ``end`` with ``text[start:end]`` within budget (galloping, then binary search).

        Invariant of the search: ``text[start:lo]`` fits and ``text[start:hi]`` does not. The
        piece alone is tokenized each time, so BPE merges across the cut cannot fool the count.
        """
        lo = atom_end(text, start)
        if lo >= len(text) or not self._fits(text[start:lo]):
            return lo  # the last character, or a character that alone exceeds the budget
        step = max(lo - start + 1, int(self.max_tokens * chars_per_token))
        while True:
            hi = min(len(text), start + step)
            if not self._fits(text[start:hi]):
                break
            lo = hi
            if hi == len(text):
                return hi
            step *= 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._fits(text[start:mid]):
                lo = mid
            else:
                hi = mid
        return lo - 1 if splits_crlf(text, lo) else lo

    def _back_off_to_whitespace(self, text: str, start: int, end: int) -> int:
        """Move ``end`` back to a word boundary in the second half of the piece: just before a
        whitespace run (``whitespace="following"``) or just after one (``"preceding"``).

        Keeps words whole when possible; keeps ``end`` if it already sits at such a boundary,
        ends the text, or the piece has no whitespace in its second half.
        """
        following = self.whitespace == "following"
        if end >= len(text) or (text[end].isspace() if following else text[end - 1].isspace()):
            return end
        lowest = max(start + 1, start + (end - start) // 2 - 1)  # the piece keeps at least half its length
        for i in range(end - 1, lowest - 1, -1):
            boundary = (text[i].isspace() and not text[i - 1].isspace()) if following else text[i - 1].isspace()
            if boundary and not splits_crlf(text, i):
                # A prefix of a fitting piece nearly always fits; BPE makes it "nearly", so check.
                return i if self._fits(text[start:i]) else end
        return end

    # -- pass 3: merging short segments ---------------------------------------------------------

    def _merge_short(self, counted: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Greedy forward merge of segments shorter than ``min_tokens`` (see the class docstring)."""
        merged: list[tuple[str, int]] = []
        for segment, n_tokens in counted:
            if merged:
                previous, previous_tokens = merged[-1]
                if previous_tokens < self.min_tokens and not paragraph_break_between(previous, segment):
                    joined = previous + segment
                    joined_tokens = self._counter.count(joined)
                    if joined_tokens <= self.max_tokens:
                        merged[-1] = (joined, joined_tokens)
                        continue
            merged.append((segment, n_tokens))
        return merged


def _slice(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]



def split_paragraph(segments: Sequence[str], max_sentences: int) -> list[list[str]]:
    """Cut a paragraph's segment list into consecutive chunks of at most ``max_sentences``.

    Lossless: the chunks, concatenated, are ``segments`` again. Use it before
    `segment_and_tokenize` to turn one long paragraph into several training examples.
    """
    if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1:
        raise ValueError(f"max_sentences must be a positive int, got {max_sentences!r}")
    segments = list(segments)
    return [segments[i : i + max_sentences] for i in range(0, len(segments), max_sentences)]


@dataclass
class SegmentedBatch:
    """A batch of segmented, tokenized paragraphs, padded on the right.

    Attributes:
        input_ids: (B, S, T) long — token ids of segment s of paragraph b; no bos/eos; padding
            positions hold the pad id.
        token_mask: (B, S, T) bool — True at real tokens.
        sentence_mask: (B, S) bool — True where paragraph b has a segment s.
        segments: the segment strings, ``segments[b][s]``; ``"".join(segments[b])`` is paragraph b.
    """

    input_ids: torch.Tensor
    token_mask: torch.Tensor
    sentence_mask: torch.Tensor
    segments: list[list[str]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> SegmentedBatch:
        """A copy with the tensors on ``device`` (the segment strings are shared)."""
        return SegmentedBatch(
            self.input_ids.to(device), self.token_mask.to(device), self.sentence_mask.to(device), self.segments
        )

    @property
    def num_tokens(self) -> int:
        """Number of real (unpadded) tokens in the batch."""
        return int(self.token_mask.sum())

    def as_model_inputs(self) -> dict[str, torch.Tensor]:
        """``dict(input_ids, token_mask, sentence_mask)``, so ``model(**batch.as_model_inputs())`` works."""
        return {"input_ids": self.input_ids, "token_mask": self.token_mask, "sentence_mask": self.sentence_mask}


def segment_and_tokenize(
    paragraphs: Sequence[str],
    tokenizer: Any,
    segmenter: Segmenter | None = None,
    *,
    max_sentences: int | None = None,
    pad_token_id: int | None = None,
) -> SegmentedBatch:
    """Segment each paragraph, tokenize each segment, pad into a `SegmentedBatch`.

    ``segmenter`` defaults to ``RegexSegmenter(tokenizer=tokenizer)`` (64-token budget). Each
    segment is tokenized alone with ``add_special_tokens=False``; a bos/eos the tokenizer adds
    anyway is stripped. S = the most segments in a paragraph, T = the most tokens in a segment.
    The pad id is ``pad_token_id``, else ``tokenizer.pad_token_id``.

    Raises ValueError for an empty batch, an empty paragraph, a paragraph with more than
    ``max_sentences`` segments, a segment that tokenizes to no tokens or to a bos/eos id; TypeError
    for a paragraph that is not a str.
    """
    if isinstance(paragraphs, str):
        raise TypeError("paragraphs must be a list of str, got a single str; wrap it in a list")
    paragraphs = list(paragraphs)
    if not paragraphs:
        raise ValueError("paragraphs is empty; pass at least one paragraph")
    for b, paragraph in enumerate(paragraphs):
        if not isinstance(paragraph, str):
            raise TypeError(f"paragraph {b} is a {type(paragraph).__name__}, expected str")
        if not paragraph:
            raise ValueError(f"paragraph {b} is the empty string; drop it before batching")
    if max_sentences is not None and (isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1):
        raise ValueError(f"max_sentences must be a positive int or None, got {max_sentences!r}")
    pad_id = _pad_id(tokenizer, pad_token_id)
    if segmenter is None:
        segmenter = RegexSegmenter(tokenizer=tokenizer)
    elif not isinstance(segmenter, Segmenter):
        raise TypeError(f"segmenter must have a .split(text) method, got {type(segmenter).__name__}")

    segments = [segmenter.split(paragraph) for paragraph in paragraphs]
    for b, parts in enumerate(segments):
        if max_sentences is not None and len(parts) > max_sentences:
            raise ValueError(
                f"paragraph {b} has {len(parts)} segments, more than max_sentences={max_sentences}; "
                "split it first: graftlm.segmenter.split_paragraph(segmenter.split(text), max_sentences) "
                "gives chunks that each fit (join each chunk back into one paragraph string)"
            )
    token_ids = _encode_all(TokenCounter(tokenizer), tokenizer, segments)

    input_ids, token_mask, sentence_mask = pad_paragraphs(token_ids, pad_id)
    return SegmentedBatch(input_ids, token_mask, sentence_mask, segments)


def pad_paragraphs(token_ids: Sequence[Sequence[Sequence[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids per segment per paragraph → ``input_ids`` (B, S, T) long, right-padded with
    ``pad_id``; ``token_mask`` (B, S, T) bool; ``sentence_mask`` (B, S) bool."""
    n_sentences = max(len(rows) for rows in token_ids)
    n_tokens = max(len(ids) for rows in token_ids for ids in rows)
    input_ids = torch.full((len(token_ids), n_sentences, n_tokens), pad_id, dtype=torch.long)
    token_mask = torch.zeros((len(token_ids), n_sentences, n_tokens), dtype=torch.bool)
    sentence_mask = torch.zeros((len(token_ids), n_sentences), dtype=torch.bool)
    for b, rows in enumerate(token_ids):
        sentence_mask[b, : len(rows)] = True
        for s, ids in enumerate(rows):
            input_ids[b, s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            token_mask[b, s, : len(ids)] = True
    return input_ids, token_mask, sentence_mask


def _pad_id(tokenizer: Any, pad_token_id: int | None) -> int:
    pad_id = pad_token_id if pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        raise ValueError(
            "no pad id: the tokenizer has no pad_token_id; pass pad_token_id=... "
            "(e.g. tokenizer.eos_token_id — padding is masked out, so any id works)"
        )
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_token_id must be a non-negative int, got {pad_id!r}")
    return pad_id


def _encode_all(counter: TokenCounter, tokenizer: Any, segments: list[list[str]]) -> list[list[list[int]]]:
    """Token ids per paragraph per segment, checked: none empty, none containing bos/eos."""
    flat = [segment for parts in segments for segment in parts]
    ids = iter(counter.encode(flat))
    specials = {getattr(tokenizer, name, None) for name in ("bos_token_id", "eos_token_id")} - {None}
    result = []
    for b, parts in enumerate(segments):
        rows = []
        for s, segment in enumerate(parts):
            row = next(ids)
            if not row:
                raise ValueError(
                    f"segment {s} of paragraph {b} ({segment!r}) tokenizes to zero tokens; "
                    "remove it from the text or use a tokenizer that keeps it"
                )
            found = specials.intersection(row)
            if found:
                raise ValueError(
                    f"segment {s} of paragraph {b} ({segment!r}) tokenizes to the bos/eos id {sorted(found)}; "
                    "segments must not contain special tokens: remove the special-token text"
                )
            rows.append(row)
        result.append(rows)
    return result
