"""The one "did you mean" of every error about an unknown name (config keys, recipe names, fields)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, choices: Iterable[str], *, listing: str = "known keys", n: int = 3,
                 cutoff: float = 0.6) -> str:
    """``"did you mean 'a' or 'b'?"`` for the ``choices`` close to ``word``; without any,
    ``"<listing>: a, b, c"`` so that the message still says what is valid."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=n, cutoff=cutoff)
    if close:
        return f"did you mean {' or '.join(map(repr, close))}?"
    return f"{listing}: {', '.join(choices) or 'none'}"
