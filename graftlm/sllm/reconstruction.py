"""Keep the SentenceVAE an autoencoder while the SentenceLLM trains (issue 19, finding 7).

The SLLM's loss trains the VAE's decoder to read the *backbone's predicted* vectors; left alone it
forgets how to read the encoder's own (held-out exact match 19.3% → 9.7% after 300 SLLM steps),
and the encoder, which reads every prompt, drifts with it. Freezing the VAE keeps its
reconstruction but costs the SLLM (×1.82 vs ×1.55 bits per byte at 300 steps). This term is the
middle way: each decoded target sentence is also encoded and decoded from its own vector, and
that reconstruction loss is added with a weight.
"""

from __future__ import annotations

from typing import Any

import torch


class Reconstruction:
    """A loss term of a SentenceLLM (``sllm.loss_terms["reconstruction"]``, see
    `set_reconstruction`): ``weight`` × the VAE's own loss on the target sentences."""

    def __init__(self, vae: Any, *, weight: float) -> None:
        if not weight > 0:
            raise ValueError(f"reconstruction weight must be > 0, got {weight!r}")
        self.vae = vae
        self.weight = float(weight)

    def loss(self, input_ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor,
             pair: torch.Tensor, decoded: Any) -> torch.Tensor:
        ids, mask = input_ids[:, 1:][pair], token_mask[:, 1:][pair]  # the sentences the body predicted
        return self.vae.decode_loss(self.vae.encode(ids, mask), ids, mask).loss


def set_reconstruction(sllm: Any, weight: float | None) -> None:
    """Add (``weight`` > 0) or remove (``None`` / 0) the reconstruction term of ``sllm``'s loss.
    Held in ``sllm.loss_terms`` (outside the module tree: nothing extra is saved)."""
    if not weight:
        sllm.loss_terms.pop("reconstruction", None)
        return
    sllm.loss_terms["reconstruction"] = Reconstruction(sllm.vae, weight=weight)
