"""Repetition control for sentence-level generation (``no_repeat_sentence``, ``repetition_penalty``).

A small grafted model's greedy text falls into loops of one sentence. `RepetitionControl` keeps,
per row, the sentences the row already has (the prompt's and its own) and the tokens its text
holds. With ``no_repeat_sentence`` a new sentence equal to one of them is re-decoded (only those
rows) with that continuation blocked (`graftlm.vae.generation.SentenceBlocker`). "Equal" is the
reader's notion when a tokenizer is known: the same text up to surrounding whitespace and case
(" Foo." repeats "foo."), which other token ids can spell, so the re-decode is repeated with each
new spelling blocked, up to ``MAX_TRIES`` times; a row that still finds only repeats ends there
(an empty sentence), so a row never emits a sentence it already has. ``repetition_penalty``
(> 1) is HF's penalty on the tokens of the row's text so far, applied by the sentence decoder.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


MAX_TRIES = 4


class RepetitionControl:
    def __init__(self, vae: Any, ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor, *,
                 no_repeat_sentence: bool, repetition_penalty: float, tokenizer: Any = None) -> None:
        """``ids`` (B, S, T), ``token_mask`` (B, S, T), ``sentence_mask`` (B, S): the prompt batch."""
        if not isinstance(no_repeat_sentence, bool):
            raise TypeError(f"no_repeat_sentence must be True or False, got {no_repeat_sentence!r}")
        if isinstance(repetition_penalty, bool) or not isinstance(repetition_penalty, (int, float)) \
                or not 0 < repetition_penalty < float("inf"):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1.0 = off), got {repetition_penalty!r}")
        self.vae = vae
        self.tokenizer = tokenizer
        self.no_repeat = no_repeat_sentence
        self.penalty = float(repetition_penalty)
        B = ids.shape[0]
        real = token_mask & sentence_mask[..., None]
        self.seen: torch.Tensor | None = None
        if self.penalty != 1.0:
            self.seen = torch.zeros(B, vae.config.vocab_size, dtype=torch.bool, device=ids.device)
            rows = torch.arange(B, device=ids.device)[:, None, None].expand_as(ids)
            self.seen[rows[real], ids[real]] = True
        self.history: list[set[tuple[int, ...]]] = [set() for _ in range(B)]  # token ids
        self.texts: list[set[str]] = [set() for _ in range(B)]  # normalised texts
        if self.no_repeat:
            for b, (sents, masks) in enumerate(zip(ids.tolist(), real.tolist())):
                for s, m in zip(sents, masks):
                    if any(m):
                        self._add(b, tuple(t for t, keep in zip(s, m) if keep))

    def _key(self, row: tuple[int, ...]) -> str | None:
        if self.tokenizer is None:
            return None
        try:
            text = self.tokenizer.decode(list(row), skip_special_tokens=True)
        except TypeError:
            text = self.tokenizer.decode(list(row))
        return " ".join(text.split()).lower()

    def _add(self, b: int, row: tuple[int, ...]) -> None:
        self.history[b].add(row)
        key = self._key(row)
        if key is not None:
            self.texts[b].add(key)

    def _repeats(self, b: int, row: tuple[int, ...]) -> bool:
        if not row:
            return False
        if row in self.history[b]:
            return True
        key = self._key(row)
        return key is not None and key in self.texts[b]

    @property
    def active(self) -> bool:
        return self.no_repeat or self.penalty != 1.0

    def decode(self, vectors: torch.Tensor, max_tokens: int, sampling: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, h) vectors → (ids, mask) like ``vae.generate(..., return_tensors=True)``, with the controls."""
        extra = {"repetition_penalty": self.penalty, "seen_tokens": self.seen} if self.seen is not None else {}
        ids, mask = self.vae.generate(vectors, max_tokens, return_tensors=True, **extra, **sampling)
        if not self.no_repeat:
            return ids, mask
        rows = self._rows(ids, mask)
        repeats = [b for b, row in enumerate(rows) if self._repeats(b, row)]
        blocked = {b: set(self.history[b]) for b in repeats}
        for _ in range(MAX_TRIES):
            if not repeats:
                return ids, mask
            for b in repeats:
                blocked[b].add(rows[b])
            pick = torch.tensor(repeats, device=ids.device)
            if self.seen is not None:
                extra["seen_tokens"] = self.seen[pick]
            new_ids, new_mask = self.vae.generate(vectors[pick], max_tokens, return_tensors=True,
                                                  banned_sentences=[[list(s) for s in blocked[b]] for b in repeats],
                                                  **extra, **sampling)
            width = max(ids.shape[1], new_ids.shape[1])
            pad = self.vae.config.pad_token_id
            ids, mask = F.pad(ids, (0, width - ids.shape[1]), value=pad), F.pad(mask, (0, width - mask.shape[1]))
            ids[pick] = F.pad(new_ids, (0, width - new_ids.shape[1]), value=pad)
            mask[pick] = F.pad(new_mask, (0, width - new_mask.shape[1]))
            for b, row in zip(repeats, self._rows(new_ids, new_mask)):
                rows[b] = row
            repeats = [b for b in repeats if self._repeats(b, rows[b])]
        if repeats:  # only repeats left: the row ends here (an empty sentence ends a row)
            mask[torch.tensor(repeats, device=mask.device)] = False
        return ids, mask

    def record(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """The sentences (ids (B, T), mask (B, T): what each row actually emitted) join the history."""
        if self.seen is not None:
            rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
            self.seen[rows[mask], ids[mask]] = True
        if self.no_repeat:
            for b, row in enumerate(self._rows(ids, mask)):
                if row:
                    self._add(b, row)

    @staticmethod
    def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]]:
        host = torch.cat([ids, mask.sum(1, keepdim=True)], 1).cpu().tolist()  # one transfer
        return [tuple(row[: row[-1]]) if row[-1] else () for row in host]
