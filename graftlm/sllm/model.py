"""SentenceLLM: SentenceVAE encoder → backbone body over sentence positions → termination head +
SentenceVAE decoder. Built by `graftlm.graft`; see `graftlm.sllm.graft` for the options.

Shapes: B paragraphs, S sentence slots, T tokens per sentence, h the VAE width, d the body width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from graftlm.hub import PushToHubMixin
from graftlm.losses import focal_loss
from graftlm.plugins.adapter import BackboneAdapter
from graftlm.segmenter import RegexSegmenter
from graftlm.sllm import distill
from graftlm.sllm.generation import GenerationMixin
from graftlm.sllm.graft import graft_into
from graftlm.sllm.io import PretrainedMixin
from graftlm.sllm.official import OfficialMixin
from graftlm.sllm.targets import sentence_positions, termination_targets

__all__ = ["SentenceLLM", "SentenceLLMOutput", "graft", "load", "sentence_positions", "termination_targets"]


@dataclass
class SentenceLLMOutput(ModelOutput):
    """What `SentenceLLM.forward` returns: a transformers `ModelOutput` (``out.loss``,
    ``out["loss"]``, ``out[0]``; fields left None are not keys).

    ``token_logprobs`` / ``target_mask`` are (B, S, T+1): row [b, s] holds log p(target) of
    sentence s decoded from the hidden state at position s-1 (tokens then eos); slot s = 0 and
    slots without a preceding sentence are all-False in ``target_mask`` (and 0 in the log-probs).
    """

    loss: torch.Tensor | None = None  # () decoder_loss + termination_weight · termination_loss
    decoder_loss: torch.Tensor | None = None  # () the VAE decoder's loss (focal or CE) over all target tokens
    termination_loss: torch.Tensor | None = None  # () focal loss over every real sentence position
    token_logprobs: torch.Tensor | None = None  # (B, S, T+1) float32
    target_mask: torch.Tensor | None = None  # (B, S, T+1) bool
    hidden_states: torch.Tensor | None = None  # (B, S, d) body output (0-padding slots hold junk; mask them)
    termination_logits: torch.Tensor | None = None  # (B, S, 2): index 1 = another sentence follows
    distillation_loss: torch.Tensor | None = None  # () KL(teacher ‖ decoder) per token, when distilling

    @property
    def num_targets(self) -> int:
        return int(self.target_mask.sum())

    def perplexity(self) -> float:
        """exp(mean −log p) over all target tokens of the batch (sentences 2…n of each paragraph)."""
        n = self.target_mask.sum().clamp_min(1)
        return float(torch.exp(-(self.token_logprobs.detach() * self.target_mask).sum() / n))


class SentenceLLM(GenerationMixin, PretrainedMixin, OfficialMixin, PushToHubMixin, nn.Module):
    """A decoder-only LLM that reads and writes whole sentences (see module docstring)."""

    def __init__(
        self,
        vae: nn.Module,
        body: nn.Module,
        adapter: BackboneAdapter,
        *,
        termination_gamma: float = 2.0,
        termination_weight: float = 1.0,
        graft_options: dict[str, Any] | None = None,
        backbone_info: dict[str, Any] | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.body = body
        self.adapter = adapter
        self.vae_hidden_size = int(vae.hidden_size)
        self.body_hidden_size = int(adapter.hidden_size(body))
        same = self.vae_hidden_size == self.body_hidden_size
        self.proj_in = nn.Identity() if same else nn.Linear(self.vae_hidden_size, self.body_hidden_size)
        self.proj_out = nn.Identity() if same else nn.Linear(self.body_hidden_size, self.vae_hidden_size)
        self.termination_head = nn.Linear(self.body_hidden_size, 2)
        self.termination_gamma = float(termination_gamma)
        self.termination_weight = float(termination_weight)
        self.graft_options = dict(graft_options or {})
        self.backbone_info = dict(backbone_info or {})
        self.tokenizer = tokenizer
        # extra training-loss terms (e.g. distillation, `graftlm.sllm.distill`): a plain dict, so a
        # term's models are neither submodules nor saved
        self.loss_terms: dict[str, Any] = {}
        limit = adapter.max_positions(body)
        self.max_positions: int | None = int(limit) if limit else None

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_teacher(self, teacher: torch.nn.Module | None, *, weight: float = 1.0, topk: int = 32,
                    prefix_ids: list[int] | None = None) -> None:
        """Distil from ``teacher`` (the un-grafted backbone) while training: the loss gains
        ``weight`` × KL(teacher ‖ sentence decoder) per token; see `graftlm.sllm.distill.set_teacher`."""
        distill.set_teacher(self, teacher, weight=weight, topk=topk, prefix_ids=prefix_ids)

    @property
    def teacher(self) -> Any:
        """The distillation term set by `set_teacher` (a `graftlm.sllm.distill.Teacher`), or None."""
        return self.loss_terms.get("distillation")

    @property
    def segment_budget(self) -> int:
        """Most tokens per segment the VAE was trained with (``config.max_tokens``; one less with a
        sinusoidal table, whose first position is bos): the default for prompts and decoding."""
        return int(self.vae.config.max_segment_tokens or self.vae.config.max_tokens)

    def segmenter(self, tokenizer: Any = None) -> Any:
        """The segmenter this model's text is cut with: the VAE's trained budget and the rule /
        ``min_tokens`` recorded at grafting or training (``graft_options["segmenter"]``)."""
        options = dict(self.graft_options.get("segmenter") or {})
        options.pop("pattern", None)
        options["max_tokens"] = min(int(options.get("max_tokens") or self.segment_budget), self.segment_budget)
        return RegexSegmenter(tokenizer=tokenizer if tokenizer is not None else self.tokenizer, **options)

    def graft_parameters(self) -> list[nn.Parameter]:
        """The parameters grafting added: projections and termination head."""
        return [*self.proj_in.parameters(), *self.proj_out.parameters(), *self.termination_head.parameters()]

    def encode_sentences(self, input_ids: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """(N, T) ids + bool mask → (N, d) body inputs (VAE encoder, then ``proj_in``), in the
        body's dtype (the VAE and the body may run in different dtypes)."""
        vectors = self.vae.encode(input_ids, token_mask)
        return self.proj_in(vectors.to(self.termination_head.weight.dtype))

    def sentence_inputs(self, input_ids: torch.Tensor, token_mask: torch.Tensor,
                        sentence_mask: torch.Tensor) -> torch.Tensor:
        """(B, S, T) ids + masks → (B, S, d) body inputs: every real sentence through ONE
        `encode_sentences` call, scattered back to its slot (padding slots hold zeros)."""
        sm = sentence_mask.bool()
        vectors = self.encode_sentences(input_ids[sm], token_mask[sm])  # (N, d)
        return vectors.new_zeros(*sm.shape, vectors.shape[-1]).index_put((*sm.nonzero(as_tuple=True),), vectors)

    def sentence_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d) body outputs → (..., h) vectors for the VAE decoder (``proj_out``), in its dtype."""
        return self.proj_out(hidden).to(next(self.vae.parameters()).dtype)

    def run_body(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """The adapter's causal body call; ``attention_mask`` (B, P+L) covers the cache too.
        (``graft(..., attention="bidirectional")`` swaps in an adapter that shows the body the later
        sentences too: research only, `graftlm.sllm.leak`.)"""
        return self.adapter.forward(self.body, inputs_embeds, attention_mask, position_ids, past_key_values, use_cache)

    def _check_batch(self, input_ids, token_mask, sentence_mask) -> tuple[torch.Tensor, torch.Tensor]:
        for name, t in (("input_ids", input_ids), ("token_mask", token_mask), ("sentence_mask", sentence_mask)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be (batch, sentences, tokens), got shape {tuple(input_ids.shape)}")
        if token_mask.shape != input_ids.shape:
            raise ValueError(f"token_mask {tuple(token_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
        if sentence_mask.shape != input_ids.shape[:2]:
            raise ValueError(f"sentence_mask {tuple(sentence_mask.shape)} must be input_ids' first two dims {tuple(input_ids.shape[:2])}")
        sm, tm = sentence_mask.bool(), token_mask.bool()
        if bool((sm[:, 1:] & ~sm[:, :-1]).any()):
            raise ValueError("sentence_mask must be right-padded (a paragraph's sentences first, then padding)")
        if not bool(sm.any()):
            raise ValueError("the batch has no sentences (sentence_mask is all False)")
        if not torch.equal(tm.any(-1), sm):
            raise ValueError("token_mask and sentence_mask disagree: every real sentence needs >= 1 token and padding slots none")
        if self.max_positions is not None and sm.shape[1] > self.max_positions:
            raise ValueError(f"{sm.shape[1]} sentences per paragraph but the backbone has {self.max_positions} positions; split paragraphs")
        return sm, tm

    # ------------------------------------------------------------------ training
    def forward(self, input_ids: torch.Tensor, token_mask: torch.Tensor, sentence_mask: torch.Tensor,
                document_ends: torch.Tensor | None = None) -> SentenceLLMOutput:
        """Teacher-forced causal pass over a batch of paragraphs.

        ``input_ids`` (B, S, T) long, ``token_mask`` (B, S, T) bool, ``sentence_mask`` (B, S) bool,
        sentences right-padded per paragraph and tokens right-padded per sentence (a
        `SegmentedBatch`). All real sentences go through ONE ``vae.encode`` call; the body sees a
        2D padding mask and builds its own causal mask; hidden state s predicts sentence s+1.
        ``document_ends`` (B,) bool, default all True: False for a window cut out of a longer
        document, whose last sentence is then labelled "continue" (the document goes on), not "stop".
        """
        sm, tm = self._check_batch(input_ids, token_mask, sentence_mask)
        B, S, T = input_ids.shape
        x = self.sentence_inputs(input_ids, tm, sm)
        hidden, _ = self.run_body(x, sm, sentence_positions(sm))
        term_logits = self.termination_head(hidden)

        follows = termination_targets(sm, document_ends)
        term_logp = torch.log_softmax(term_logits.float(), -1).gather(-1, follows.long()[..., None])[..., 0]
        term_loss = focal_loss(term_logp, sm, self.termination_gamma)

        token_logprobs = hidden.new_zeros(B, S, T + 1, dtype=torch.float32)
        target_mask = torch.zeros(B, S, T + 1, dtype=torch.bool, device=hidden.device)
        pair = sm[:, :-1] & sm[:, 1:]  # (B, S-1): position s has a next sentence
        if bool(pair.any()):
            source = self.sentence_vectors(hidden[:, :-1][pair])  # (M, h)
            # each target row uses its OWN token mask (the authors paired it with sentence s's)
            dec = self.vae.decode_loss(source, input_ids[:, 1:][pair], tm[:, 1:][pair])
            idx = pair.nonzero(as_tuple=True)
            token_logprobs = token_logprobs.index_put((idx[0], idx[1] + 1), dec.token_logprobs.float())
            target_mask = target_mask.index_put((idx[0], idx[1] + 1), dec.target_mask)
            dec_loss = dec.loss
        else:  # single-sentence paragraphs only: nothing to decode
            dec_loss = hidden.sum() * 0.0
        loss = dec_loss + self.termination_weight * term_loss
        terms: dict[str, torch.Tensor] = {}
        if self.training and bool(pair.any()):
            for name, term in self.loss_terms.items():
                terms[name] = term.loss(input_ids, tm, sm, pair, dec)
                loss = loss + term.weight * terms[name]
        return SentenceLLMOutput(loss, dec_loss, term_loss, token_logprobs, target_mask, hidden, term_logits,
                                 terms.get("distillation"))


def graft(model: nn.Module, vae: Any, **options: Any) -> SentenceLLM:
    """Graft ``vae`` onto the causal LM ``model`` (modified in place): a `SentenceLLM`. Options and
    errors: `graftlm.sllm.graft.graft_into`."""
    return graft_into(SentenceLLM, model, vae, **options)


def load(directory: Any, **kwargs: Any) -> SentenceLLM:
    """Load a SentenceLLM saved with `SentenceLLM.save_pretrained` (``backbone=``, ``device=``);
    see `graftlm.sllm.io.load`."""
    return SentenceLLM.from_pretrained(directory, **kwargs)
