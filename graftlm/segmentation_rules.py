"""Where segments may be cut, where the whitespace at a cut goes, and how segments are counted.

Kept apart from `graftlm.segmenter` so that the segmenter module reads as the algorithm alone.

Two cut rules:

* ``"semantic"`` (the default) cuts where a reader would: after ``, . ; : ! ?`` (a run of them, with
  closing quotes/brackets, is one cut) only when whitespace or the end of the text follows, so
  numbers (``4,500``, ``12.99``, ``3.11.7``), dotted names (``os.path.join``), URLs and file paths
  are never cut; not after common abbreviations (``e.g.``, ``i.e.``, ``Mr.``, ``Dr.``, an initial
  such as ``J.``), and after ``etc.`` or a dotted acronym (``U.S.``) only when a capital letter
  follows; after CJK punctuation (``，。！？；：``, no whitespace needed); and at every line break.
* ``"paper"``: the authors' collator (reference.md §2), for reproduction and their checkpoints:
  after any of ``，。”！？；：,.!?;:"`` wherever it stands (decimals and abbreviations cut too), after
  ``……`` and a line break; runs and closers join one cut, and a straight ``"`` only cuts when it
  closes (the authors' rule also cuts after an opening quote, leaving a lone ``"`` segment).

Whitespace at a cut goes to the **following** segment by default, as byte-level BPE attaches a
space to the next word: ``"The cat sat. The dog ran."`` → ``"The cat sat."`` | ``" The dog ran."``.
A segment's end then never says whether the text goes on (with the paper's convention, every
segment but a document's last ends in whitespace: a perfect "continue" cue the termination head
learns instead of content), a prompt typed as ``"The cat sat."`` looks like training data, and a
generated sentence carries its own separator. Whitespace at the end of a text stays with the last
segment (there is no following one). ``whitespace="preceding"`` is the paper's convention.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

RULES = ("semantic", "paper")
WHITESPACE_MODES = ("following", "preceding")

#: Characters after which the paper cuts (``”`` is the CJK/typographic closing quote).
CUT_CHARS = "，。！？；：,.!?;:”"
#: Characters that extend a cut when they come right after punctuation, but never start one.
CLOSERS = "\"”’'」』）)]…"

_CUT_START = f'(?:……|[{re.escape(CUT_CHARS)}]|(?<=\\S)")'
_CUT_CONTINUE = f"(?:[{re.escape(CUT_CHARS + CLOSERS)}])*"

#: The paper's cut pattern: a cut goes right after the end of every match.
PAPER_PATTERN = f"{_CUT_START}{_CUT_CONTINUE}|\\r\\n|[\\r\\n]"
#: Kept for code that imported it: the paper's pattern.
DEFAULT_PATTERN = PAPER_PATTERN

_LATIN_CUT = re.compile(f"(?:[,.;:!?]|…)+[{re.escape(CLOSERS)}]*(?=\\s|$)")
_CJK_CUT = re.compile(f"(?:[，。！？；：]|……)+[{re.escape(CLOSERS)}”]*")
_LINE_BREAK_RUN = re.compile(r"[^\S\r\n]*(?:\r\n|[\r\n])\s*")
#: Words after which a "." never ends a segment (lower-cased, without the final dot).
NO_CUT_AFTER = frozenset(
    "mr mrs ms mx dr prof sr jr st rev fr hon gen col capt cpt lt sgt mt ft "
    "e.g i.e cf vs viz approx ca no nos vol vols fig figs eq eqs ch sec pp p op ed eds al resp esp".split()
)
#: Words after which a "." ends a segment only when a capital letter follows.
CUT_IF_CAPITAL_FOLLOWS = frozenset("etc inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec".split())
_WORD_BEFORE_DOT = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
_ACRONYM = re.compile(r"(?:[A-Za-z]\.){2,}$")
_WHITESPACE_RUN = re.compile(r"\s*")
_LINE_BREAK = re.compile(r"\r\n|[\r\n]")


def _semantic_keeps(text: str, end: int) -> bool:
    """False when the Latin cut ending at ``end`` follows an abbreviation that does not end a segment."""
    if text[end - 1] != "." or (end >= 2 and text[end - 2] in ".!?"):
        return True  # only a lone final dot can belong to an abbreviation
    word_match = _WORD_BEFORE_DOT.search(text, max(0, end - 24), end)
    if word_match is None:
        return True
    word = word_match.group(1)
    start = word_match.start(1)
    if start > 0 and not (text[start - 1].isspace() or text[start - 1] in "(\"'“‘["):
        return True  # e.g. "x.e.g." glued to something: not a standalone abbreviation
    following = _WHITESPACE_RUN.match(text, end).end()
    capital_follows = following < len(text) and text[following].isupper()
    lowered = word.lower()
    if lowered in NO_CUT_AFTER:
        return False
    if len(word) == 1 and word.isupper() and word != "I":
        return False  # an initial: "J. Smith"
    if lowered in CUT_IF_CAPITAL_FOLLOWS or _ACRONYM.fullmatch(word + "."):
        return capital_follows
    return True


def raw_cuts(text: str, rule: str, pattern: re.Pattern[str] | None) -> list[int]:
    """Cut points before whitespace placement: right after each cut, or inside a line-break run."""
    if pattern is not None or rule == "paper":
        compiled = pattern if pattern is not None else re.compile(PAPER_PATTERN)
        return [m.end() for m in compiled.finditer(text)]
    cuts = [m.end() for m in _LATIN_CUT.finditer(text) if _semantic_keeps(text, m.end())]
    cuts += [m.end() for m in _CJK_CUT.finditer(text)]
    cuts += [m.start() for m in _LINE_BREAK_RUN.finditer(text)]
    return cuts


def place_cuts(text: str, cuts: Sequence[int], whitespace: str) -> list[int]:
    """Sorted cut positions strictly inside ``text``, each moved to the edge of the whitespace run
    it touches: its start (``"following"``: the whitespace begins the next segment) or its end
    (``"preceding"``). A cut that would leave a whitespace-only last segment is dropped."""
    n = len(text)
    body_end = len(text.rstrip())
    placed: set[int] = set()
    for cut in cuts:
        if whitespace == "preceding":
            cut = _WHITESPACE_RUN.match(text, cut).end()
        else:
            while cut > 0 and text[cut - 1].isspace():
                cut -= 1
        if 0 < cut < n and (whitespace == "preceding" or cut < body_end):
            placed.add(cut)
    return sorted(placed)


def check_rule(rule: str, whitespace: str | None) -> str:
    """Validate ``rule`` / ``whitespace``; returns the whitespace mode (default per rule)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if whitespace is None:
        return "preceding" if rule == "paper" else "following"
    if whitespace not in WHITESPACE_MODES:
        raise ValueError(f"whitespace must be one of {WHITESPACE_MODES} (where the whitespace at a cut goes), got {whitespace!r}")
    return whitespace


def compile_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """Compile a custom cut pattern (``None`` stays None: the rule decides), with a clear error."""
    if pattern is None:
        return None
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


def atom_end(text: str, start: int) -> int:
    """End of the smallest piece that may start at ``start``: one character, or ``\\r\\n`` whole."""
    return start + 2 if text.startswith("\r\n", start) else start + 1


def splits_crlf(text: str, position: int) -> bool:
    """True when cutting ``text`` at ``position`` would separate ``\\r`` from its ``\\n``."""
    return 0 < position < len(text) and text[position - 1] == "\r" and text[position] == "\n"


def paragraph_break_between(previous: str, following: str) -> bool:
    """True when the whitespace where ``previous`` meets ``following`` holds two or more line breaks."""
    tail = previous[len(previous.rstrip()) :]
    head = following[: len(following) - len(following.lstrip())]
    return len(_LINE_BREAK.findall(tail + head)) >= 2


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
