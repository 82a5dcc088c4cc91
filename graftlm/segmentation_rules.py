"""Where segments may be cut, and how segments are counted in tokens.

Kept apart from `graftlm.segmenter` so that the segmenter module reads as the algorithm alone.

The default rule is the paper's (reference.md §2): cut after any of ``，。”！？；：,.!?;:"``, after
the two-character pairs ``……``, ``."``, ``".``, ``?"``, ``!"``, ``,"`` (and the CJK ones such as
``。”``), and after a line break. Two refinements, both documented choices:

* a *run* of cut characters is one cut, and closing quotes/brackets right after punctuation join
  that cut (``Hi."`` → one cut after the quote; ``...`` → one cut after the third dot), which
  subsumes every listed pair;
* a straight ``"`` only cuts when it closes, i.e. follows a non-space character: the authors'
  rule also cuts after an *opening* quote, which leaves a lone ``"`` segment behind
  (``He said, "Hi."`` would give ``He said, `` | ``"`` | ``Hi."``).

Whitespace after a cut stays with the preceding segment (so ``\\r\\n`` is never split there).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

#: Characters after which the paper cuts (``”`` is the CJK/typographic closing quote).
CUT_CHARS = "，。！？；：,.!?;:”"
#: Characters that extend a cut when they come right after punctuation, but never start one.
CLOSERS = "\"”’'」』）)]…"

_CUT_START = f'(?:……|[{re.escape(CUT_CHARS)}]|(?<=\\S)")'
_CUT_CONTINUE = f"(?:[{re.escape(CUT_CHARS + CLOSERS)}])*"

#: The default cut pattern: a cut goes right after the end of every match.
DEFAULT_PATTERN = f"{_CUT_START}{_CUT_CONTINUE}|\\r\\n|[\\r\\n]"

_WHITESPACE_RUN = re.compile(r"\s*")
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")


def compile_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str]:
    """Compile a cut pattern (``None`` → `DEFAULT_PATTERN`), with a clear error when it is invalid."""
    if pattern is None:
        return re.compile(DEFAULT_PATTERN)
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise TypeError("pattern must be a str regular expression, not a bytes one")
        return pattern
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str or a compiled re.Pattern, got {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from err


def cut_positions(text: str, pattern: re.Pattern[str]) -> list[int]:
    """Sorted positions strictly inside ``text`` where a cut goes.

    A cut goes after each match of ``pattern`` (a zero-width match cuts where it stands), moved
    past any whitespace that follows so the whitespace stays with the preceding segment.
    """
    cuts: set[int] = set()
    for match in pattern.finditer(text):
        end = _WHITESPACE_RUN.match(text, match.end()).end()
        if 0 < end < len(text):
            cuts.add(end)
    return sorted(cuts)


def atom_end(text: str, start: int) -> int:
    """End of the smallest piece that may start at ``start``: one character, or ``\\r\\n`` whole."""
    return start + 2 if text.startswith("\r\n", start) else start + 1


def splits_crlf(text: str, position: int) -> bool:
    """True when cutting ``text`` at ``position`` would separate ``\\r`` from its ``\\n``."""
    return 0 < position < len(text) and text[position - 1] == "\r" and text[position] == "\n"


def ends_paragraph(segment: str) -> bool:
    """True when the whitespace that ends ``segment`` holds two or more line breaks (``\\n\\n``)."""
    tail = segment[len(segment.rstrip()) :]
    return len(_LINE_BREAK.findall(tail)) >= 2


class TokenCounter:
    """Encodes text the way graftlm needs it: no special tokens, special-token text kept as text.

    ``tokenizer`` is anything HF-like (``tokenizer(list_of_texts, add_special_tokens=False)
    ["input_ids"]``); ``None`` counts UTF-8 bytes as tokens (`encode` then needs a tokenizer).
    ``split_special_tokens=True`` is passed when the tokenizer accepts it, so a literal
    ``<|endoftext|>`` in the text is encoded as text, not as the eos id. A bos/eos that the
    tokenizer adds despite ``add_special_tokens=False`` is stripped (found by encoding a probe).
    """

    def __init__(self, tokenizer: Any = None) -> None:
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(
                f"tokenizer must be callable like a Hugging Face tokenizer "
                f"(tokenizer(texts, add_special_tokens=False)['input_ids']), got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self._pass_split_special = True
        self._strip_bos = self._strip_eos = False
        if tokenizer is not None:
            probe = self._raw_encode(["a"])[0]
            bos = getattr(tokenizer, "bos_token_id", None)
            eos = getattr(tokenizer, "eos_token_id", None)
            self._strip_bos = bos is not None and len(probe) > 1 and probe[0] == bos
            self._strip_eos = eos is not None and len(probe) > 1 + self._strip_bos and probe[-1] == eos

    def _raw_encode(self, texts: list[str]) -> list[list[int]]:
        kwargs = {"add_special_tokens": False}
        if self._pass_split_special:
            try:
                out = self.tokenizer(texts, split_special_tokens=True, **kwargs)
            except TypeError:
                self._pass_split_special = False
        if not self._pass_split_special:
            out = self.tokenizer(texts, **kwargs)
        try:
            rows = out["input_ids"]
        except (TypeError, KeyError) as err:
            raise TypeError(
                "tokenizer(texts, add_special_tokens=False) must return a mapping with 'input_ids' "
                f"(got {type(out).__name__})"
            ) from err
        if len(rows) != len(texts):
            raise TypeError("tokenizer(list_of_texts) must return one list of ids per text")
        return [[int(i) for i in row] for row in rows]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without bos/eos."""
        if self.tokenizer is None:
            raise ValueError("encoding needs a tokenizer; this TokenCounter counts UTF-8 bytes")
        if not texts:
            return []
        rows = self._raw_encode(list(texts))
        first = 1 if self._strip_bos else 0
        return [row[first : len(row) - 1] if self._strip_eos else row[first:] for row in rows]

    def counts(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (UTF-8 bytes without a tokenizer)."""
        if self.tokenizer is None:
            return [len(t.encode("utf-8", "surrogatepass")) for t in texts]
        return [len(row) for row in self.encode(texts)]

    def count(self, text: str) -> int:
        """Number of tokens of one text."""
        return self.counts([text])[0]
