"""Sentence-level generation: prefill the prompt's sentences, then per step
termination head → VAE decoder (KV-cached) → re-encode the new sentence WITH its mask → one
backbone step with the body's KV cache.

All rows advance together, left-aligned: each row's prompt ends in the last column and every new
sentence is appended right after it, so no row has padding between its sentences (`left_align`);
a finished row keeps riding along masked out (no re-indexing, no per-row host work). Host syncs per step: one ``active.any()`` plus those inside ``vae.generate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from graftlm.segmenter import SegmentedBatch, segment_and_tokenize
from graftlm.sllm.repetition import RepetitionControl
from graftlm.sllm.targets import sentence_positions

if TYPE_CHECKING:  # annotations only: the class imports this module for its mixin
    from graftlm.sllm.model import SentenceLLM

SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "use_cache", "ignore_eos", "generator")
REPETITION_KEYS = ("no_repeat_sentence", "repetition_penalty")
DEFAULT_NEW_SENTENCES = 64  # max_sentences default = prompt + this, only for a backbone without a position limit


@dataclass
class SentenceGenerationOutput:
    """``generate(..., return_dict=True)``: the new sentences of each prompt row."""

    token_ids: list[list[list[int]]]  # [row][new sentence] -> ids (no bos/eos)
    segments: list[list[str]] | None  # decoded new sentences (None without a tokenizer)
    texts: list[str] | None  # "".join(segments[row])
    num_new_tokens: list[int]
    num_new_sentences: list[int]
    hidden_states: torch.Tensor | None = None  # (B, 1 + steps, d): prompt's last state, then each step's


def _tokenizer_for(sllm: SentenceLLM, tokenizer: Any) -> Any:
    return tokenizer if tokenizer is not None else sllm.tokenizer


def _decode(tokenizer: Any, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    except TypeError:
        return tokenizer.decode(ids)


def _prompt_batch(sllm: SentenceLLM, prompts: Any, tokenizer: Any, segmenter: Any, max_sentences: int | None):
    if isinstance(prompts, SegmentedBatch):
        batch = prompts
    else:
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ValueError("no prompts: pass a str, a list of str or a SegmentedBatch")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"prompt {i} is a {type(p).__name__}; pass str prompts or a SegmentedBatch")
            if not p.strip():
                raise ValueError(f"prompt {i} is empty; a sentence-level LLM continues at least one sentence")
        if tokenizer is None:
            raise ValueError("text prompts need a tokenizer: pass tokenizer=... (or graft(..., tokenizer=...))")
        if segmenter is None:  # the segments the model was trained on (the VAE's trained budget)
            segmenter = sllm.segmenter(tokenizer)
        if getattr(segmenter, "whitespace", "following") == "following":
            # Whitespace belongs to the segment that follows it: a prompt's trailing whitespace is
            # the start of the continuation, which the decoder writes itself (with its separator).
            prompts = [p.rstrip() for p in prompts]
        batch = segment_and_tokenize(prompts, tokenizer, segmenter, pad_token_id=sllm.vae.config.pad_token_id)
    counts = batch.sentence_mask.bool().sum(1)
    if bool((counts == 0).any()):
        raise ValueError("a prompt row has no sentence (sentence_mask all False); every prompt needs one")
    if max_sentences is not None and int(counts.max()) > max_sentences:
        raise ValueError(
            f"a prompt has {int(counts.max())} sentences, more than max_sentences={max_sentences}; "
            "shorten the prompt or raise max_sentences (it counts prompt + new sentences)"
        )
    return batch


def _limits(sllm: SentenceLLM, max_sentences: int | None, max_tokens: int | None) -> tuple[int | None, int]:
    """Checked limits; ``max_sentences`` None (= the backbone's positions) stays None only for a
    backbone without a position limit (`_setup` then derives it from the prompt)."""
    cap = sllm.max_positions
    if max_sentences is None:
        max_sentences = cap
    if max_sentences is not None and (
        isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1
    ):
        raise ValueError(f"max_sentences must be a positive int, got {max_sentences!r}")
    if cap and max_sentences is not None and max_sentences > cap:
        raise ValueError(f"max_sentences={max_sentences} exceeds the backbone's {cap} positions")
    vae_cap = sllm.vae.config.max_segment_tokens
    if max_tokens is None:  # the budget the VAE was trained with, not its hard limit
        max_tokens = sllm.segment_budget
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens_per_sentence must be a positive int, got {max_tokens!r}")
    if vae_cap and max_tokens > vae_cap:
        raise ValueError(f"max_tokens_per_sentence={max_tokens} exceeds the VAE's {vae_cap}-token segments")
    return max_sentences, max_tokens


def _steps(
    sllm: SentenceLLM,
    batch: Any,
    *,
    max_sentences: int,
    max_new_sentences: int | None,
    max_new_tokens: int | None,
    max_tokens: int,
    ignore_stop: bool,
    sampling: dict[str, Any],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (prefill hidden (B, d)) once, then per step (ids (B, T), mask (B, T), emitted (B,), h (B, d))."""
    sampling = dict(sampling)
    repetition = {k: sampling.pop(k) for k in REPETITION_KEYS if k in sampling}
    dev = sllm.device
    with torch.inference_mode():
        sm = batch.sentence_mask.to(dev).bool()
        tm = batch.token_mask.to(dev).bool() & sm[..., None]
        ids = batch.input_ids.to(dev)
        B, S = sm.shape
        control = RepetitionControl(sllm.vae, ids, tm, sm,  # the prompt's own layout, before aligning
                                    no_repeat_sentence=repetition.get("no_repeat_sentence", False),
                                    repetition_penalty=repetition.get("repetition_penalty", 1.0),
                                    tokenizer=getattr(sllm, "tokenizer", None))
        x, sm = left_align(sllm.sentence_inputs(ids, tm, sm), sm)
        hidden, cache = sllm.run_body(x, sm, sentence_positions(sm), sllm.adapter.new_cache(sllm.body), True)
        h_last = hidden[:, -1]  # every row's last real sentence is in the last column
        _check_finite_prefill(x[sm], h_last)
        attn = sm
        n_sent = sm.sum(1)
        tokens_out = torch.zeros(B, dtype=torch.long, device=dev)
        active = torch.ones(B, dtype=torch.bool, device=dev)
    yield h_last

    steps = max_sentences - int(n_sent.min())
    if max_new_sentences is not None:
        steps = min(steps, max_new_sentences)
    pad_id = sllm.vae.config.pad_token_id
    for _ in range(steps):
        with torch.inference_mode():
            if not ignore_stop:
                active = active & (sllm.termination_head(h_last).argmax(-1) == 1)
            active = active & (n_sent < max_sentences)
            if max_new_tokens is not None:
                active = active & (tokens_out < max_new_tokens)
        if not bool(active.any()):
            return
        with torch.inference_mode():
            if control.active:
                new_ids, mask = control.decode(sllm.sentence_vectors(h_last), max_tokens, sampling)
            else:
                new_ids, mask = sllm.vae.generate(sllm.sentence_vectors(h_last), max_tokens, return_tensors=True,
                                                  **sampling)
            if new_ids.shape[1] == 0:  # every row ended at once: keep one (masked) column to encode
                new_ids = F.pad(new_ids, (0, 1), value=pad_id)
                mask = F.pad(mask, (0, 1), value=False)
            mask = mask & active[:, None]
            if max_new_tokens is not None:
                mask = mask & (mask.long().cumsum(1) <= (max_new_tokens - tokens_out)[:, None])
            emitted = mask.any(1)  # an empty sentence also ends its row
            if control.active:
                control.record(new_ids, mask)
            enc_mask = mask.clone()
            enc_mask[:, 0] |= ~emitted  # finished rows encode one pad token, masked out below
            x = sllm.encode_sentences(new_ids, enc_mask)[:, None]
            attn = torch.cat([attn, emitted[:, None]], 1)
            positions = n_sent.clamp_max(max_sentences - 1)[:, None]
            hidden, cache = sllm.run_body(x, attn, positions, cache, True)
            h_last = torch.where(emitted[:, None], hidden[:, 0], h_last)
            n_sent = n_sent + emitted
            tokens_out = tokens_out + mask.sum(1)
            active = emitted
        yield new_ids, mask, emitted, h_last


def left_align(inputs: torch.Tensor, sentence_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, d) inputs and (B, S) bool mask → the same, each row's real sentences moved (in order)
    to the end of the row, padding first.

    Rows are laid out contiguously so that the prompt and every new sentence appended after it
    form one unbroken run: a backbone whose state depends on key indices (ALiBi from indices,
    MPT) or on every earlier input (convolution / recurrent layers, Jamba, LFM2) then computes in
    a batch exactly what it computes for the row alone.
    """
    order = sentence_mask.long().argsort(dim=1, stable=True)  # padding (0) first, each side in order
    moved = inputs.gather(1, order[..., None].expand(-1, -1, inputs.shape[-1]))
    return moved, sentence_mask.gather(1, order)


def _check_finite_prefill(vectors: torch.Tensor, h_last: torch.Tensor) -> None:
    ok_vectors, ok_hidden = torch.stack([torch.isfinite(vectors).all(), torch.isfinite(h_last).all()]).tolist()
    if not ok_vectors:
        raise ValueError(
            "the SentenceVAE encoder turned the prompt into NaN/inf sentence vectors: its weights are not finite "
            "(a diverged run or a damaged checkpoint); reload a good one"
        )
    if not ok_hidden:
        raise ValueError(
            "the backbone body returned NaN/inf hidden states for the prompt: the backbone or projection weights "
            "are not finite (a diverged run or a damaged checkpoint); reload a good one"
        )


def _setup(sllm, prompts, tokenizer, segmenter, max_sentences, max_tokens_per_sentence, max_new_sentences, max_new_tokens, sampling):
    unknown = set(sampling) - set(SAMPLING_KEYS) - set(REPETITION_KEYS)
    if unknown:
        raise TypeError(f"unknown generation option(s) {sorted(unknown)}; sampling options are "
                        f"{list(SAMPLING_KEYS + REPETITION_KEYS)}")
    if sampling.get("return_tensors") is not None:
        raise TypeError("return_tensors is set by SentenceLLM.generate itself")
    max_sentences, max_tokens = _limits(sllm, max_sentences, max_tokens_per_sentence)
    for name, value in (("max_new_sentences", max_new_sentences), ("max_new_tokens", max_new_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    tokenizer = _tokenizer_for(sllm, tokenizer)
    batch = _prompt_batch(sllm, prompts, tokenizer, segmenter, max_sentences)
    if max_sentences is None:
        max_sentences = int(batch.sentence_mask.bool().sum(1).max()) + DEFAULT_NEW_SENTENCES
    return tokenizer, batch, max_sentences, max_tokens


def continue_probability(sllm: SentenceLLM, prompts: Any, tokenizer: Any = None, *, segmenter: Any = None) -> torch.Tensor:
    """(B,) float: the termination head's P(another sentence follows) after each prompt, with the
    prompt prepared exactly as `generate` prepares it."""
    tokenizer = _tokenizer_for(sllm, tokenizer)
    max_sentences, max_tokens = _limits(sllm, None, None)
    batch = _prompt_batch(sllm, prompts, tokenizer, segmenter, max_sentences or sllm.max_positions or 10**9)
    steps = _steps(sllm, batch, max_sentences=max_sentences or 10**9, max_new_sentences=None, max_new_tokens=None,
                   max_tokens=max_tokens, ignore_stop=False, sampling={})
    h_last = next(steps)
    with torch.inference_mode():
        return torch.softmax(sllm.termination_head(h_last).float(), -1)[:, 1].cpu()


def generate(
    sllm: SentenceLLM,
    prompts: Any,
    tokenizer: Any = None,
    *,
    max_sentences: int | None = None,
    max_new_sentences: int | None = None,
    max_new_tokens: int | None = None,
    max_tokens_per_sentence: int | None = None,
    ignore_stop: bool = False,
    segmenter: Any = None,
    return_dict: bool = False,
    output_hidden_states: bool = False,
    streamer: Any = None,
    **sampling: Any,
) -> list[str] | SentenceGenerationOutput:
    """Continue a batch of prompts sentence by sentence.

    ``prompts``: a str, a list of str (segmented with ``segmenter`` or a ``RegexSegmenter`` on
    ``tokenizer``) or a `SegmentedBatch` (any per-row sentence padding, left or right).
    Limits: ``max_sentences`` (prompt + new, default: the backbone's max positions; prompt + 64
    for a backbone without a limit),
    ``max_new_sentences``, ``max_new_tokens`` (per row, total; the last sentence is cut there),
    ``max_tokens_per_sentence`` (VAE decode budget). A row stops when the termination head says
    stop (unless ``ignore_stop=True``, for fixed-length benchmarks), at a limit, or when the VAE
    decodes an empty sentence. ``sampling``: do_sample, temperature, top_k, top_p, use_cache,
    ignore_eos, generator — forwarded to ``vae.generate``; repetition control
    (`graftlm.sllm.repetition`): ``no_repeat_sentence=True`` (a row never emits a sentence it
    already has, prompt included), ``repetition_penalty`` (HF-style, > 1 penalises the tokens of
    the row's text so far). ``streamer``: any transformers streamer
    (``put`` / ``end``, e.g. ``TextIteratorStreamer``); as in transformers it gets the prompt's token
    ids first, then each new sentence's ids as it is decoded, then ``end()``; batch size 1 only.

    Returns the new text of each row (list[str]), or with ``return_dict=True`` a
    `SentenceGenerationOutput` (token ids always; texts when a tokenizer is known).
    """
    tokenizer, batch, max_sentences, max_tokens = _setup(
        sllm, prompts, tokenizer, segmenter, max_sentences, max_tokens_per_sentence, max_new_sentences, max_new_tokens, sampling
    )
    if not return_dict and tokenizer is None:
        raise ValueError("no tokenizer to decode the output: pass tokenizer=... or return_dict=True for token ids")
    steps = _steps(
        sllm, batch, max_sentences=max_sentences, max_new_sentences=max_new_sentences,
        max_new_tokens=max_new_tokens, max_tokens=max_tokens, ignore_stop=ignore_stop, sampling=sampling,
    )
    if streamer is not None:
        _start_stream(streamer, batch)
    hiddens = [next(steps)]
    ids_list, mask_list = [], []
    for new_ids, mask, _, h in steps:
        ids_list.append(new_ids)
        mask_list.append(mask)
        if streamer is not None and int(mask[0].sum()):
            streamer.put(new_ids[0, : int(mask[0].sum())].cpu())
        if output_hidden_states:
            hiddens.append(h)
    if streamer is not None:
        streamer.end()
    B = batch.sentence_mask.shape[0]
    token_ids: list[list[list[int]]] = [[] for _ in range(B)]
    if ids_list:
        width = max(t.shape[1] for t in ids_list)
        all_ids = torch.stack([F.pad(t, (0, width - t.shape[1])) for t in ids_list], 1).cpu()  # one transfer
        all_mask = torch.stack([F.pad(m, (0, width - m.shape[1])) for m in mask_list], 1).cpu()
        for b, (rows, masks) in enumerate(zip(all_ids.tolist(), all_mask.tolist())):
            for row, m in zip(rows, masks):
                n = sum(m)
                if n:
                    token_ids[b].append(row[:n])
    segments = [[_decode(tokenizer, s) for s in rows] for rows in token_ids] if tokenizer is not None else None
    texts = ["".join(rows) for rows in segments] if segments is not None else None
    if not return_dict:
        return texts  # type: ignore[return-value]
    return SentenceGenerationOutput(
        token_ids=token_ids,
        segments=segments,
        texts=texts,
        num_new_tokens=[sum(len(s) for s in rows) for rows in token_ids],
        num_new_sentences=[len(rows) for rows in token_ids],
        hidden_states=torch.stack(hiddens, 1) if output_hidden_states else None,
    )


def _start_stream(streamer: Any, batch: Any) -> None:
    """Refuse what a transformers streamer cannot take, then hand it the prompt's ids (streamers
    with ``skip_prompt=True`` drop that first call, as in transformers)."""
    if not callable(getattr(streamer, "put", None)) or not callable(getattr(streamer, "end", None)):
        raise TypeError(f"streamer must have put() and end() like transformers' streamers, got {type(streamer).__name__}")
    rows = batch.sentence_mask.shape[0]
    if rows != 1:
        raise ValueError(f"streamer= supports one prompt at a time (batch size 1), got {rows}; stream each prompt "
                         "separately, or use SentenceLLM.stream for a batch")
    streamer.put(batch.input_ids[0][batch.token_mask[0].bool()].cpu())


def stream(
    sllm: SentenceLLM,
    prompts: Any,
    tokenizer: Any = None,
    *,
    max_sentences: int | None = None,
    max_new_sentences: int | None = None,
    max_new_tokens: int | None = None,
    max_tokens_per_sentence: int | None = None,
    ignore_stop: bool = False,
    segmenter: Any = None,
    **sampling: Any,
) -> Iterator[list[Any]]:
    """Like `generate`, but yield after every step: one entry per row, the new segment's text
    (or its token ids without a tokenizer), None for rows that produced nothing this step."""
    tokenizer, batch, max_sentences, max_tokens = _setup(
        sllm, prompts, tokenizer, segmenter, max_sentences, max_tokens_per_sentence, max_new_sentences, max_new_tokens, sampling
    )
    steps = _steps(
        sllm, batch, max_sentences=max_sentences, max_new_sentences=max_new_sentences,
        max_new_tokens=max_new_tokens, max_tokens=max_tokens, ignore_stop=ignore_stop, sampling=sampling,
    )

    def run() -> Iterator[list[Any]]:
        next(steps)
        for new_ids, mask, emitted, _ in steps:
            lengths = mask.sum(1)
            host = torch.cat([new_ids, lengths[:, None]], 1).cpu().tolist()  # one transfer per step
            out: list[Any] = []
            for *row, n in host:
                ids = row[:n]
                out.append(None if not n else (_decode(tokenizer, ids) if tokenizer is not None else ids))
            yield out

    return run()


class GenerationMixin:
    """`SentenceLLM`'s generation methods (the functions above, with the model as ``self``)."""

    def generate(self, prompts: Any, tokenizer: Any = None, **kwargs: Any) -> Any:
        """Continue each prompt sentence by sentence; see `graftlm.sllm.generation.generate`."""
        return generate(self, prompts, tokenizer, **kwargs)

    def continue_probability(self, prompts: Any, tokenizer: Any = None, **kwargs: Any) -> torch.Tensor:
        """(B,) P(another sentence follows) after each prompt; see `graftlm.sllm.generation`."""
        return continue_probability(self, prompts, tokenizer, **kwargs)

    def stream(self, prompts: Any, tokenizer: Any = None, **kwargs: Any) -> Iterator[Any]:
        """Yield, per step, each row's new segment (None for finished rows); same options as generate."""
        return stream(self, prompts, tokenizer, **kwargs)
