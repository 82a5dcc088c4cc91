"""Batched decoding of sentence vectors: greedy or sampled, with or without the KV cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from graftlm.vae.model import SentenceVAE


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept), set the rest to -inf."""
    if k <= 0:
        raise ValueError(f"top_k must be a positive int, got {k}")
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches p
    (the most likely token is always kept); set the rest to -inf."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p == 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = probs.cumsum(-1) - probs  # probability mass strictly above each token
    drop_sorted = before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(
    logits: torch.Tensor,
    *,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, V) → token ids (B,) long: argmax, or a sample after temperature/top-k/top-p."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None:
        logits = filter_top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _banned_ids(c, ignore_eos: bool) -> list[int]:
    """Token ids generation never emits as content: pad and bos (unless one of them is also eos,
    which ends the sentence), and eos itself under ``ignore_eos``."""
    banned = {c.pad_token_id, c.bos_token_id} - {c.eos_token_id}
    if ignore_eos:
        banned.add(c.eos_token_id)
    if len(banned) >= c.vocab_size:
        raise ValueError(
            f"vocab_size={c.vocab_size} leaves no content token besides pad/bos/eos {sorted(banned)}; "
            "a SentenceVAE needs a real vocabulary"
        )
    return sorted(banned)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF's repetition penalty (CTRL, arXiv 1909.05858): the logits of tokens already in the row's
    text (``seen`` (B, V) bool) are divided by ``penalty`` when positive, multiplied when negative."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


class SentenceBlocker:
    """Per-row sentences a row must not produce again: when a row's tokens so far equal a blocked
    sentence's all but last, that last token is forbidden (and eos after the whole sentence, for a
    sentence that already ends there). So no new sentence *starts with* a blocked one either: a
    sentence extended past a blocked one would show the same sentence to a reader (and to a
    segmenter) followed by something else. Host-side, one transfer per step."""

    def __init__(self, banned: list[list[list[int]]], eos: int) -> None:
        self.eos = eos
        self.ends = [{tuple(s) for s in rows if s} for rows in banned]
        self.last: list[dict[tuple[int, ...], set[int]]] = [{} for _ in banned]
        for r, rows in enumerate(banned):
            for s in rows:
                if s:
                    self.last[r].setdefault(tuple(s[:-1]), set()).add(s[-1])
        self.so_far: list[list[int]] = [[] for _ in banned]

    def block(self, logits: torch.Tensor) -> None:
        for r, prefix in enumerate(self.so_far):
            key = tuple(prefix)
            if key in self.ends[r]:
                logits[r, self.eos] = float("-inf")
            if key in self.last[r]:
                logits[r, sorted(self.last[r][key])] = float("-inf")

    def record(self, token: torch.Tensor) -> None:
        for prefix, t in zip(self.so_far, token.tolist()):
            prefix.append(t)


def _check_finite_vectors(vectors: torch.Tensor) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"sentence_vectors must be (batch, hidden_size), got shape {tuple(vectors.shape)}")
    bad = ~torch.isfinite(vectors).all(-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"sentence_vectors rows {rows[:10]} contain NaN or inf; nothing can be decoded from them. "
            "Check where they come from (an encoder or backbone with non-finite weights, a diverged run)"
        )


def _raise_nonfinite(rows_mask: torch.Tensor, step: int) -> None:
    rows = rows_mask.nonzero().flatten().tolist()
    raise ValueError(
        f"the SentenceVAE decoder produced NaN/inf logits (rows {rows[:10]}, by token {step}) from finite "
        "sentence vectors: its weights are not finite or overflow in this dtype. Reload a good checkpoint "
        "(check it with torch.isfinite on every parameter) or run in float32"
    )


def generate(
    model: "SentenceVAE",
    sentence_vectors: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    ignore_eos: bool = False,
    generator: torch.Generator | None = None,
    return_tensors: bool = False,
    repetition_penalty: float = 1.0,
    seen_tokens: torch.Tensor | None = None,
    banned_sentences: list[list[list[int]]] | None = None,
):
    """Expand (B, h) sentence vectors into token ids, all rows at once.

    ``max_new_tokens`` None = ``config.max_tokens`` (64 in both presets). Each row stops at its
    own eos (finished rows are fed padding until every row is done or ``max_new_tokens`` is
    reached). Pad and bos are never emitted as content tokens. NaN/inf vectors or logits (non-finite
    weights) raise ValueError instead of decoding garbage. ``ignore_eos=True`` forbids eos, so every row gets exactly
    ``max_new_tokens`` tokens (fixed-length benchmarks). ``use_cache=False`` recomputes the whole
    prefix every step (same tokens, slower). Returns one list of ids per row without bos/eos, or
    with ``return_tensors=True`` ``(ids (B, T) long, mask (B, T) bool)``, right-padded with the
    pad id, ready for ``encode``.

    Repetition control: ``repetition_penalty`` > 1 penalises (HF-style) the tokens the row already
    wrote in this sentence and those marked in ``seen_tokens`` ((B, V) bool, e.g. the row's earlier
    text); ``banned_sentences`` (one list of id lists per row) are sentences the row may not
    produce (see `SentenceBlocker`).
    """
    c = model.config
    if max_new_tokens is None:
        max_new_tokens = c.max_tokens
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if c.position == "sinusoidal" and max_new_tokens > c.max_tokens:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} exceeds this model's {c.max_tokens}-position sinusoidal table"
        )
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if isinstance(repetition_penalty, bool) or not isinstance(repetition_penalty, (int, float)) \
            or not repetition_penalty > 0 or repetition_penalty == float("inf"):
        raise ValueError(f"repetition_penalty must be a finite number > 0 (1.0 = off), got {repetition_penalty!r}")
    rows = sentence_vectors.shape[0]
    if seen_tokens is not None and (seen_tokens.shape != (rows, c.vocab_size) or seen_tokens.dtype != torch.bool):
        raise ValueError(f"seen_tokens must be a ({rows}, {c.vocab_size}) bool tensor, got "
                         f"{tuple(seen_tokens.shape)} {seen_tokens.dtype}")
    if banned_sentences is not None and len(banned_sentences) != rows:
        raise ValueError(f"banned_sentences needs one list per row ({rows}), got {len(banned_sentences)}")

    banned = _banned_ids(c, ignore_eos)
    decoder = model.decoder
    param = next(model.parameters())
    with torch.inference_mode():
        vectors = sentence_vectors.to(device=param.device, dtype=param.dtype)
        _check_finite_vectors(vectors)
        batch = vectors.shape[0]
        prefix = torch.full((batch, 1), c.bos_token_id, dtype=torch.long, device=vectors.device)
        out = torch.full((batch, max_new_tokens), c.pad_token_id, dtype=torch.long, device=vectors.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=vectors.device)
        nonfinite = torch.zeros(batch, dtype=torch.bool, device=vectors.device)
        cache = decoder.new_cache(vectors, capacity=max_new_tokens) if use_cache else None
        penalise = repetition_penalty != 1.0
        seen = None
        if penalise:
            seen = seen_tokens.to(vectors.device).clone() if seen_tokens is not None else \
                torch.zeros(batch, c.vocab_size, dtype=torch.bool, device=vectors.device)
        blocker = SentenceBlocker(banned_sentences, c.eos_token_id) if banned_sentences else None
        steps = 0
        for t in range(max_new_tokens):
            if cache is not None:
                logits = decoder(vectors, prefix[:, -1:], cache)[:, -1]
            else:
                logits = decoder(vectors, prefix)[:, -1]
            nonfinite |= ~torch.isfinite(logits).all(-1)
            if penalise:
                logits = apply_repetition_penalty(logits, seen, float(repetition_penalty))
            if blocker is not None:
                blocker.block(logits)
            # pad and bos are structure, never content: a sentence may not contain them
            logits[:, banned] = float("-inf")
            token = next_tokens(
                logits, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )
            token = token.masked_fill(finished, c.pad_token_id)
            out[:, t] = token
            if penalise:
                seen[torch.arange(batch, device=token.device), token] |= ~finished
            if blocker is not None:
                blocker.record(token)
            steps = t + 1
            if not ignore_eos:
                finished |= token == c.eos_token_id
                done, bad = torch.stack([finished.all(), nonfinite.any()]).tolist()  # one host sync per step
                if bad:
                    _raise_nonfinite(nonfinite, t)
                if done:
                    break
            if t + 1 < max_new_tokens:
                prefix = torch.cat([prefix, token[:, None]], dim=1)
        if ignore_eos and bool(nonfinite.any()):
            _raise_nonfinite(nonfinite, steps - 1)

        out = out[:, :steps]
        is_eos = (out == c.eos_token_id) if not ignore_eos else torch.zeros_like(out, dtype=torch.bool)
        mask = is_eos.long().cumsum(1) == 0  # before each row's first eos
        lengths = mask.sum(1)
        width = int(lengths.max()) if batch else 0
        ids = out[:, :width].masked_fill(~mask[:, :width], c.pad_token_id)
        mask = mask[:, :width]
    if return_tensors:
        return ids.clone(), mask.clone()
    rows = ids.tolist()
    return [row[:n] for row, n in zip(rows, lengths.tolist())]

