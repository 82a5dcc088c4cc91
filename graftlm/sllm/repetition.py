"""Repetition control for sentence-level generation (``no_repeat_sentence``, ``repetition_penalty``).

A small grafted model's greedy text falls into loops of one sentence. `RepetitionControl` keeps,
per row, the sentences the row already has (the prompt's and its own) and the tokens its text
holds. With ``no_repeat_sentence`` a new sentence equal to one of them is re-decoded (only those
rows) with that continuation blocked (`graftlm.vae.generation.SentenceBlocker`), so a row never
emits a sentence it already has. ``repetition_penalty`` (> 1) is HF's penalty on the tokens of the
row's text so far, applied by the sentence decoder.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class RepetitionControl:
    def __init__(self, vae: Any, ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor, *,
                 no_repeat_sentence: bool, repetition_penalty: float) -> None:
        """``ids`` (B, S, T), ``token_mask`` (B, S, T), ``sentence_mask`` (B, S): the prompt batch."""
        if not isinstance(no_repeat_sentence, bool):
            raise TypeError(f"no_repeat_sentence must be True or False, got {no_repeat_sentence!r}")
        if isinstance(repetition_penalty, bool) or not isinstance(repetition_penalty, (int, float)) \
                or not 0 < repetition_penalty < float("inf"):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1.0 = off), got {repetition_penalty!r}")
        self.vae = vae
        self.no_repeat = no_repeat_sentence
        self.penalty = float(repetition_penalty)
        B = ids.shape[0]
        real = token_mask & sentence_mask[..., None]
        self.seen: torch.Tensor | None = None
        if self.penalty != 1.0:
            self.seen = torch.zeros(B, vae.config.vocab_size, dtype=torch.bool, device=ids.device)
            rows = torch.arange(B, device=ids.device)[:, None, None].expand_as(ids)
            self.seen[rows[real], ids[real]] = True
        self.history: list[set[tuple[int, ...]]] = [set() for _ in range(B)]
        if self.no_repeat:
            for b, (sents, masks) in enumerate(zip(ids.tolist(), real.tolist())):
                for s, m in zip(sents, masks):
                    if any(m):
                        self.history[b].add(tuple(t for t, keep in zip(s, m) if keep))

    @property
    def active(self) -> bool:
        return self.no_repeat or self.penalty != 1.0

    def decode(self, vectors: torch.Tensor, max_tokens: int, sampling: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, h) vectors → (ids, mask) like ``vae.generate(..., return_tensors=True)``, with the controls."""
        extra = {"repetition_penalty": self.penalty, "seen_tokens": self.seen} if self.seen is not None else {}
        ids, mask = self.vae.generate(vectors, max_tokens, return_tensors=True, **extra, **sampling)
        if not self.no_repeat:
            return ids, mask
        repeats = [b for b, row in enumerate(self._rows(ids, mask)) if row and row in self.history[b]]
        if not repeats:
            return ids, mask
        pick = torch.tensor(repeats, device=ids.device)
        if self.seen is not None:
            extra["seen_tokens"] = self.seen[pick]
        banned = [[list(s) for s in self.history[b]] for b in repeats]
        new_ids, new_mask = self.vae.generate(vectors[pick], max_tokens, return_tensors=True,
                                              banned_sentences=banned, **extra, **sampling)
        width = max(ids.shape[1], new_ids.shape[1])
        ids = F.pad(ids, (0, width - ids.shape[1]), value=self.vae.config.pad_token_id)
        mask = F.pad(mask, (0, width - mask.shape[1]), value=False)
        ids[pick] = F.pad(new_ids, (0, width - new_ids.shape[1]), value=self.vae.config.pad_token_id)
        mask[pick] = F.pad(new_mask, (0, width - new_mask.shape[1]), value=False)
        return ids, mask

    def record(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """The sentences (ids (B, T), mask (B, T): what each row actually emitted) join the history."""
        if self.seen is not None:
            rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
            self.seen[rows[mask], ids[mask]] = True
        if self.no_repeat:
            for b, row in enumerate(self._rows(ids, mask)):
                if row:
                    self.history[b].add(row)

    @staticmethod
    def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]]:
        host = torch.cat([ids, mask.sum(1, keepdim=True)], 1).cpu().tolist()  # one transfer
        return [tuple(row[: row[-1]]) if row[-1] else () for row in host]
