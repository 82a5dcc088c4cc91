"""Distillation from the un-grafted backbone into the sentence decoder.

The teacher (the original causal LM) reads each paragraph's tokens in order, so its next-token
distribution for token j of sentence s conditions on exactly what the SentenceLLM may use: all
earlier sentences and the current sentence's tokens before j. The student is the sentence decoder
decoding sentence s from hidden state s-1. The loss is KL(teacher ‖ student) per token over the
teacher's top-k tokens (renormalised; the standard sparse approximation), averaged over the
decoded tokens; the eos targets have no teacher counterpart and keep their cross-entropy only.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def teacher_topk(teacher: torch.nn.Module, input_ids: torch.Tensor, token_mask: torch.Tensor,
                 sentence_mask: torch.Tensor, k: int, prefix_ids: list[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` teacher (ids, log-probs) for every token of every sentence: (B, S, T, k) each.

    Entry [b, s, t] is the teacher's distribution for token t of sentence s given the paragraph's
    earlier tokens (``prefix_ids``, e.g. OPT's ``</s>``, in front); sentence 0's first token has no
    context without a prefix and gets the distribution after the prefix, or zeros (masked later).
    """
    B, S, T = input_ids.shape
    device = input_ids.device
    tm = token_mask.bool() & sentence_mask.bool()[..., None]
    prefix = torch.tensor(prefix_ids or [], dtype=torch.long, device=device)
    rows = [torch.cat([prefix, input_ids[b][tm[b]]]) for b in range(B)]
    length = max(len(r) for r in rows)
    ids = torch.zeros(B, length, dtype=torch.long, device=device)
    attn = torch.zeros(B, length, dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = r
        attn[b, : len(r)] = 1
    logits = teacher(input_ids=ids, attention_mask=attn).logits.float()
    logp = torch.log_softmax(logits, -1)
    top_lp, top_ids = logp.topk(k, dim=-1)  # (B, L, k)
    out_ids = torch.zeros(B, S, T, k, dtype=torch.long, device=device)
    out_lp = torch.full((B, S, T, k), float("-inf"), device=device)
    for b in range(B):
        # concatenated position of each real token; the teacher predicts it from the position before
        pos = torch.cumsum(tm[b].flatten().long(), 0).view(S, T) - 1 + len(prefix)
        src = pos - 1
        ok = tm[b] & (src >= 0)
        out_ids[b][ok] = top_ids[b, src[ok]]
        out_lp[b][ok] = top_lp[b, src[ok]]
    return out_ids, out_lp


def distillation_loss(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logp: torch.Tensor,
                      token_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of KL(teacher ‖ student) on the teacher's top-k support.

    ``student_logits`` (..., V), ``teacher_ids`` / ``teacher_logp`` (..., k), ``token_mask`` (...)
    bool (positions whose teacher log-probs are -inf, i.e. without a teacher, are skipped too). The
    teacher's top-k probabilities are renormalised to 1; the student's log-probs are over the vocab.
    """
    student_lp = torch.log_softmax(student_logits.float(), -1).gather(-1, teacher_ids)  # (..., k)
    mask = token_mask.bool() & torch.isfinite(teacher_logp[..., 0])
    # positions without a teacher hold -inf: make them finite so no NaN reaches the gradient
    safe = torch.where(mask[..., None], teacher_logp, torch.zeros_like(teacher_logp))
    t_lp = safe - torch.logsumexp(safe, -1, keepdim=True)
    kl = (t_lp.exp() * (t_lp - student_lp)).sum(-1)
    kl = torch.where(mask, kl, torch.zeros_like(kl))
    return kl.sum() / mask.sum().clamp_min(1)


def packed_teacher(t_ids: torch.Tensor, t_lp: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, T, k) teacher targets of decoded sentences → rows matching the decoder's packed logits
    (``target_mask`` (M, T+1): tokens, then each sentence's eos, which has no teacher: -inf)."""
    ids = torch.nn.functional.pad(t_ids, (0, 0, 0, 1))
    lp = torch.nn.functional.pad(t_lp, (0, 0, 0, 1), value=float("-inf"))
    return ids[target_mask], lp[target_mask]


def set_teacher(sllm: Any, teacher: torch.nn.Module | None, *, weight: float = 1.0, topk: int = 32,
                prefix_ids: list[int] | None = None) -> None:
    """Distil from ``teacher`` (the un-grafted backbone) while ``sllm`` trains: its loss gains the
    term ``weight`` × KL(teacher ‖ sentence decoder) per token. The teacher is held in
    ``sllm.loss_terms`` (outside the module tree: never saved or trained); ``None`` stops it."""
    if teacher is None:
        sllm.loss_terms.pop("distillation", None)
        sllm.graft_options.pop("distill", None)
        return
    if sllm.graft_options.get("own_vocab"):
        raise ValueError("distillation needs the VAE to share the backbone's tokenizer (own_vocab=False)")
    sllm.loss_terms["distillation"] = Teacher(teacher, weight=weight, topk=topk, prefix_ids=prefix_ids)
    sllm.graft_options["distill"] = {"weight": float(weight), "topk": int(topk)}


class Teacher:
    """The frozen teacher and the distillation settings: a loss term of a SentenceLLM
    (``sllm.loss_terms["distillation"]``, see `set_teacher`)."""

    def __init__(self, model: torch.nn.Module, *, weight: float, topk: int = 32,
                 prefix_ids: list[int] | None = None) -> None:
        if not weight > 0:
            raise ValueError(f"distillation weight must be > 0, got {weight!r}")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"distillation topk must be a positive int, got {topk!r}")
        if getattr(model, "get_output_embeddings", lambda: None)() is None:
            raise ValueError("the teacher must be an un-grafted causal LM with its LM head (a fresh copy of the backbone)")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.weight = float(weight)
        self.topk = topk
        self.prefix_ids = list(prefix_ids or [])

    def targets(self, input_ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor) -> Any:
        return teacher_topk(self.model, input_ids, token_mask, sentence_mask, self.topk, self.prefix_ids)

    def loss(self, input_ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor,
             pair: torch.Tensor, decoded: Any) -> torch.Tensor:
        """KL(teacher ‖ decoder) per token over the sentences the forward decoded: ``pair`` (B, S-1)
        marks the positions with a next sentence, ``decoded`` is the VAE's `DecodeOutput` for them."""
        t_ids, t_lp = self.targets(input_ids, token_mask, sentence_mask)
        ids_k, lp_k = packed_teacher(t_ids[:, 1:][pair], t_lp[:, 1:][pair], decoded.target_mask)
        every = torch.ones(len(ids_k), dtype=torch.bool, device=ids_k.device)
        return distillation_loss(decoded.packed_logits, ids_k, lp_k, every)
