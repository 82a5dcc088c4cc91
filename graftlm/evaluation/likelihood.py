"""Cost of the same bytes under a SentenceLLM and under its backbone, each on its own tokens.

The scored span of a text is every segment after its first (the SentenceLLM reads sentence 1 to
predict sentence 2, so the first segment is context for both sides), conditioned on all the text
before it. The SentenceLLM pays, per scored segment, −log p of each token *and* of its eos (the
decision to end the sentence there is part of writing the text). The backbone pays −log p of each
token of its **natural** tokenization of the whole text, with its own special tokens (OPT's
``</s>`` prefix), a token belonging to the span its first character falls in. Bits per byte =
total nats / ln 2 / UTF-8 bytes of the span: the one figure that compares different tokenizations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from graftlm.segmenter import segment_and_tokenize
from graftlm.sllm.model import termination_targets


@dataclass
class TextCost:
    """Summed cost over a set of texts (nats; counts are tokens / bytes / decisions)."""

    nats: float = 0.0
    tokens: int = 0
    eos_nats: float = 0.0
    term_correct: int = 0
    term_total: int = 0
    stop_hits: int = 0

    def add(self, other: "TextCost") -> None:
        self.nats += other.nats
        self.tokens += other.tokens
        self.eos_nats += other.eos_nats
        self.term_correct += other.term_correct
        self.term_total += other.term_total
        self.stop_hits += other.stop_hits


@torch.no_grad()
def sllm_cost(sllm: Any, tokenizer: Any, texts: Sequence[str], segmenter: Any, *,
              batch_size: int = 4) -> tuple[TextCost, list[list[str]]]:
    """The SentenceLLM's cost of segments 2…n of each text (tokens + eos), teacher-forced, and its
    termination accuracy on every segment (a text's last one is "stop"). Returns the segments too."""
    total = TextCost()
    segments: list[list[str]] = []
    device = sllm.device
    for i in range(0, len(texts), batch_size):
        batch = segment_and_tokenize(list(texts[i:i + batch_size]), tokenizer, segmenter,
                                     pad_token_id=sllm.vae.config.pad_token_id)
        segments += batch.segments
        tm, sm = batch.token_mask, batch.sentence_mask
        out = sllm(batch.input_ids.to(device), tm.to(device), sm.to(device))
        mask = out.target_mask.cpu()
        lp = out.token_logprobs.cpu() * mask
        eos = torch.zeros_like(mask)
        eos.scatter_(-1, tm.sum(-1)[..., None], True)  # each sentence's eos sits after its tokens
        eos &= mask
        pred = out.termination_logits.argmax(-1).cpu()
        correct = (pred == termination_targets(sm).long()) & sm
        stop_at_end = pred[torch.arange(sm.shape[0]), sm.sum(1) - 1] == 0
        for b in range(sm.shape[0]):
            total.add(TextCost(nats=float(-lp[b].sum()), tokens=int(tm[b, 1:].sum()),
                               eos_nats=float(-(lp[b] * eos[b]).sum()), term_correct=int(correct[b].sum()),
                               term_total=int(sm[b].sum()), stop_hits=int(stop_at_end[b])))
    return total, segments


def token_char_starts(tokenizer: Any, text: str) -> tuple[list[int], list[int], list[bool]]:
    """Natural tokenization of ``text`` with the tokenizer's own special tokens: (ids, the index
    of each token's first character, whether each token is a special token)."""
    try:
        enc = tokenizer(text, return_offsets_mapping=True)
        offsets = [int(a) for a, _ in enc["offset_mapping"]]
        ids = list(enc["input_ids"])
    except (NotImplementedError, TypeError, KeyError, ValueError):  # a slow tokenizer: no offsets
        enc = tokenizer(text)
        ids = list(enc["input_ids"])
        offsets = _offsets_by_decoding(tokenizer, ids)
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    special = [t in special_ids for t in ids]
    return ids, offsets, special


def _offsets_by_decoding(tokenizer: Any, ids: list[int]) -> list[int]:
    starts = []
    for i in range(len(ids)):
        starts.append(len(tokenizer.decode(ids[:i], skip_special_tokens=True)))
    return starts


@torch.no_grad()
def backbone_cost(backbone: torch.nn.Module, tokenizer: Any, texts: Sequence[str], span_starts: Sequence[int],
                  *, batch_size: int = 2) -> TextCost:
    """The un-grafted causal LM's cost of each text's characters from ``span_starts[i]`` on, on its
    natural tokenization (a token scored when its first character is in the span)."""
    device = next(backbone.parameters()).device
    limit = getattr(getattr(backbone, "config", None), "max_position_embeddings", None)
    rows = []
    for i, (text, start) in enumerate(zip(texts, span_starts)):
        ids, offsets, special = token_char_starts(tokenizer, text)
        if limit and len(ids) > limit:
            raise ValueError(f"text {i} has {len(ids)} backbone tokens, more than its {limit} positions; "
                             "pass shorter texts (e.g. paragraphs)")
        score = [j > 0 and not special[j] and offsets[j] >= start for j in range(len(ids))]
        rows.append((ids, score))
    total = TextCost()
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        length = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        attn = torch.zeros(len(chunk), length, dtype=torch.long)
        score = torch.zeros(len(chunk), length, dtype=torch.bool)
        for b, (row, sc) in enumerate(chunk):
            ids[b, :len(row)] = torch.tensor(row)
            attn[b, :len(row)] = 1
            score[b, :len(row)] = torch.tensor(sc)
        logits = backbone(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        for b in range(len(chunk)):
            nll = F.cross_entropy(logits[b, :-1].float(), ids[b, 1:].to(device), reduction="none").cpu()
            m = score[b, 1:]
            total.add(TextCost(nats=float(nll[m].sum()), tokens=int(m.sum())))
    return total


def bits_per_byte(nats: float, n_bytes: int) -> float:
    return nats / math.log(2) / n_bytes if n_bytes else float("nan")
