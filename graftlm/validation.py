"""Typed settings: one way to say "unknown key, did you mean …" and to turn a pydantic
ValidationError into one readable ValueError, for every config graftlm reads (recipes, demo
settings, saved model configs).

Why pydantic (v2) rather than hand-written checks: types, ranges and choices are declared once
next to each field (``Annotated[int, Field(ge=1)]``, ``Literal[...]``) and checked the same way
everywhere, unknown keys are refused by ``extra="forbid"``, and every error lists the offending
field with its value; the hand-written parsers this replaces had let unknown types pass silently.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from pydantic import ValidationError


def did_you_mean(key: str, known: Iterable[str], *, n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for close matches of ``key``, else ``"; known keys: …"``."""
    known = sorted(str(k) for k in known)
    close = difflib.get_close_matches(str(key), known, n=n, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; known keys: {', '.join(known)}"


def check_known_keys(keys: Iterable[Any], known: Iterable[str], what: str) -> None:
    """ValueError for the first key of ``keys`` not in ``known``: ``unknown {what} key 'x'; did you mean …``."""
    known = set(known)
    for key in keys:
        if key not in known:
            raise ValueError(f"unknown {what} key {key!r}{did_you_mean(str(key), known)}")


def _describe(err: dict[str, Any], what: str, known: Iterable[str]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"unknown {what} key {loc!r}{did_you_mean(loc, known)}"
    if kind == "missing":
        return f"{what} key {loc!r} is required"
    msg = str(err.get("msg", "invalid value"))
    if kind == "value_error":  # raised by our own validators: the message is already complete
        return msg.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{what} key {loc!r} is {value!r}; expected one of {msg.removeprefix('Input should be ')}"
    return f"{what} key {loc!r} {msg[0].lower() + msg[1:]}, got {value!r}"


def readable_error(error: ValidationError, what: str, known: Iterable[str] = ()) -> ValueError:
    """One ValueError naming every bad field of ``error`` (``what``: "recipe", "SentenceVAEConfig"...)."""
    known = list(known)
    lines = [_describe(e, what, known) for e in error.errors()]
    return ValueError("; ".join(dict.fromkeys(lines)))
