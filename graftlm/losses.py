"""Token losses computed from per-token log-probabilities.

Both take ``token_logprobs`` (..., L) float = log p(target) and ``mask`` (..., L) bool (True =
a real target), so a caller can reduce however it likes (``reduction="none"`` gives per-token
losses, zero where the mask is False).
"""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def _reduce(losses: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    losses = losses.masked_fill(~mask, 0.0)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() / mask.sum().clamp_min(1)
    raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")


def _check(token_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if not torch.is_floating_point(token_logprobs):
        raise TypeError(f"token_logprobs must be a float tensor, got {token_logprobs.dtype}")
    if mask.shape != token_logprobs.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must match token_logprobs {tuple(token_logprobs.shape)}")
    if mask.dtype != torch.bool:
        if mask.dtype.is_floating_point:
            raise TypeError(f"mask must be bool (or 0/1 int), got {mask.dtype}")
        mask = mask.bool()
    return mask


def cross_entropy_loss(token_logprobs: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """−log p_target, reduced over the masked targets (mean by default)."""
    mask = _check(token_logprobs, mask)
    return _reduce(-token_logprobs, mask, reduction)


def focal_loss(
    token_logprobs: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, reduction: str = "mean"
) -> torch.Tensor:
    """Focal loss −(1 − p)^γ · log p with p = exp(log p); γ = 0 is cross-entropy.

    1 − p is computed as −expm1(log p) (exact when p → 1) and clamped away from 0, so the
    gradient of (1 − p)^γ stays finite for any γ ≥ 0 even when a target is certain.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    mask = _check(token_logprobs, mask)
    if gamma == 0:
        return _reduce(-token_logprobs, mask, reduction)
    logp = token_logprobs.float()
    one_minus_p = (-torch.expm1(logp)).clamp_min(torch.finfo(torch.float32).tiny)
    losses = -(one_minus_p**gamma) * logp
    return _reduce(losses.to(token_logprobs.dtype), mask, reduction)


def sampled_softmax_logprobs(
    hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, negatives: int
) -> torch.Tensor:
    """Training-only log p(target) over a candidate set: the batch's target tokens plus
    ``negatives`` ids drawn uniformly from the whole vocabulary (so tokens the batch never uses
    are still pushed down), instead of all V rows of ``head``. hidden (N, h), targets (N,) →
    (N,) float32. It underestimates the full softmax's loss: report the full one
    (``SentenceVAE`` uses this only in training mode)."""
    vocab = head.weight.shape[0]
    drawn = torch.randint(0, vocab, (negatives,), device=targets.device)
    candidates = torch.unique(torch.cat([targets, drawn]))  # sorted, targets included
    bias = head.bias[candidates] if head.bias is not None else None
    logits = torch.nn.functional.linear(hidden, head.weight[candidates], bias)
    column = torch.searchsorted(candidates, targets)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, column[:, None])[:, 0]
