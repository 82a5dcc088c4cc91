"""Typed settings: one way to say "unknown key, did you mean …" (`graftlm.suggest`) and to turn a pydantic
ValidationError into one readable ValueError, for every config graftlm reads (recipes, demo
settings, saved model configs).

Why pydantic (v2) rather than hand-written checks: types, ranges and choices are declared once
next to each field (``Annotated[int, Field(ge=1)]``, ``Literal[...]``) and checked the same way
everywhere, unknown keys are refused by ``extra="forbid"``, and every error lists the offending
field with its value; the hand-written parsers this replaces had let unknown types pass silently.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pydantic import ValidationError

from graftlm.suggest import did_you_mean


def check_known_keys(keys: Iterable[Any], known: Iterable[str], what: str) -> None:
    """ValueError for the first key of ``keys`` not in ``known``: ``unknown {what} key 'x'; did you mean …``."""
    known = set(known)
    for key in keys:
        if key not in known:
            raise ValueError(f"unknown {what} key {key!r}; {did_you_mean(key, sorted(known))}")


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_KINDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string", "dict": "a mapping",
    "list": "a list",
}


def _requirement(kind: str, err: dict[str, Any]) -> str | None:
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}"
    if kind == "finite_number":
        return "must be a finite number"
    for prefix, what in _KINDS.items():
        if kind.startswith(prefix + "_"):
            return f"must be {what}"
    return None


def describe(err: dict[str, Any], name: Callable[[str], str], *, unknown: str, known: Iterable[str] = (),
             hints: dict[str, str] | None = None) -> str:
    """One pydantic error as a sentence: ``{name(field)} must be …, got …`` (``unknown``: how to call
    an unknown key, e.g. "recipe key"; ``hints``: per-field advice appended after a colon)."""
    field = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
    kind = str(err.get("type", ""))
    value = err.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown {unknown} {field!r}; {did_you_mean(field, sorted(known))}"
    if kind == "missing":
        return f"{name(field)} is required"
    if kind in ("value_error", "assertion_error"):  # our own validators: the message is already complete
        return str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        return f"{name(field)} is {value!r}; expected one of {str(err.get('msg')).removeprefix('Input should be ')}"
    need = _requirement(kind, err) or str(err.get("msg", "is invalid")).replace("Input should be", "must be")
    text = f"{name(field)} {need}, got {value!r}"
    if kind == "string_type":
        text += f" ({type(value).__name__}); quote it"
    hint = (hints or {}).get(field.split(".")[0])
    return f"{text}: {hint}" if hint else text


def readable_error(error: ValidationError, name: Callable[[str], str], *, unknown: str, known: Iterable[str] = (),
                   hints: dict[str, str] | None = None) -> ValueError:
    """The first problem of ``error`` as one ValueError (see `describe`); the rest follow after "; also"."""
    known = list(known)
    lines = list(dict.fromkeys(describe(e, name, unknown=unknown, known=known, hints=hints) for e in error.errors()))
    return ValueError(lines[0] + (f" (also: {'; '.join(lines[1:])})" if len(lines) > 1 else ""))
