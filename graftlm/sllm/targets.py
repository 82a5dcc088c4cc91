"""Per-sentence targets shared by training, evaluation and generation: which positions are followed by
another sentence, and each sentence's position within its row."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def termination_targets(sentence_mask: torch.Tensor, document_ends: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S) bool: True ("another sentence follows") at every real sentence but a document's last.

    ``document_ends`` (B,) bool: False where the row is a window that its document continues after,
    so its last sentence is followed by one too (default: every row ends its document).
    """
    follows = F.pad(sentence_mask[:, 1:], (0, 1), value=False) & sentence_mask
    if document_ends is not None:
        if not isinstance(document_ends, torch.Tensor) or document_ends.shape != sentence_mask.shape[:1]:
            raise ValueError(f"document_ends must be a (batch,) bool tensor, got "
                             f"{tuple(document_ends.shape) if isinstance(document_ends, torch.Tensor) else type(document_ends).__name__}")
        last = sentence_mask & ~F.pad(sentence_mask[:, 1:], (0, 1), value=False)
        follows = follows | (last & ~document_ends.to(sentence_mask.device).bool()[:, None])
    return follows


def sentence_positions(sentence_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) bool → (B, S) long: each real sentence's index within its row (padding gets 0)."""
    return (sentence_mask.long().cumsum(1) - 1).clamp_min(0)
