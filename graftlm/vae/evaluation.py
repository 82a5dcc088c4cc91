"""Small helpers to train and measure a SentenceVAE on lists of token ids (tests, benchmarks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from graftlm.vae.model import SentenceVAE


def pad_token_lists(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists → ids (B, L) long, mask (B, L) bool. Empty rows are rejected."""
    if not rows:
        raise ValueError("no rows to pad")
    if any(len(r) == 0 for r in rows):
        raise ValueError("an empty token list cannot be encoded; drop empty segments first")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


def length_buckets(rows: Sequence[Sequence[int]], batch_size: int, pad_token_id: int):
    """Padded (ids, mask) batches of rows sorted by length, so little compute goes to padding."""
    ordered = sorted(rows, key=len)
    return [pad_token_lists(ordered[i : i + batch_size], pad_token_id) for i in range(0, len(ordered), batch_size)]


@dataclass
class ReconstructionReport:
    exact_match: float  # share of rows whose greedy decode equals the input exactly
    token_accuracy: float  # teacher-forced argmax == target, over tokens + eos
    perplexity: float  # exp(mean CE over tokens + eos), teacher forced
    generated: list[list[int]]


@torch.no_grad()
def reconstruction_report(model: SentenceVAE, rows: Sequence[Sequence[int]], batch_size: int = 256) -> ReconstructionReport:
    """Encode each row, decode greedily, compare; plus teacher-forced token accuracy and PPL."""
    was_training = model.training
    model.eval()
    generated, exact, correct, total, nll = [], 0, 0, 0, 0.0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = pad_token_lists(chunk, model.config.pad_token_id)
        vectors = model.encode(ids, mask)
        out = model.decode_loss(vectors, ids, mask)
        targets = torch.nn.functional.pad(ids.masked_fill(~mask, model.config.pad_token_id), (0, 1))
        targets[out.target_mask & ~torch.nn.functional.pad(mask, (0, 1))] = model.config.eos_token_id
        correct += int((out.logits.argmax(-1) == targets)[out.target_mask].sum())
        total += int(out.target_mask.sum())
        nll -= float(out.token_logprobs.sum())
        cap = max(len(r) for r in chunk) + 1
        if model.config.position == "sinusoidal":
            cap = min(cap, model.config.max_tokens)
        decoded = model.generate(vectors, cap)
        generated += decoded
        exact += sum(list(r) == d for r, d in zip(chunk, decoded))
    model.train(was_training)
    return ReconstructionReport(exact / len(rows), correct / total, math.exp(nll / total), generated)
