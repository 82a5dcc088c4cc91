"""SentenceLLM: SentenceVAE encoder → backbone body over sentence positions → termination head +
SentenceVAE decoder. Built by `graftlm.graft`; see `graftlm.sllm.graft` for the options.

Shapes: B paragraphs, S sentence slots, T tokens per sentence, h the VAE width, d the body width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from graftlm.hub import PushToHubMixin
from graftlm.losses import focal_loss
from graftlm.plugins.adapter import BackboneAdapter


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


class SentenceLLM(PushToHubMixin, nn.Module):
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
        limit = adapter.max_positions(body)
        self.max_positions: int | None = int(limit) if limit else None

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_teacher(self, teacher: torch.nn.Module | None, *, weight: float = 1.0, topk: int = 32,
                    prefix_ids: list[int] | None = None) -> None:
        """Distil from ``teacher`` (the un-grafted backbone) while training: the loss gains
        ``weight`` × KL(teacher ‖ sentence decoder) per token (`graftlm.sllm.distill`). The
        teacher is held outside the module tree (never saved or trained); ``None`` stops it."""
        from graftlm.sllm.distill import Teacher

        if teacher is None:
            self.__dict__["_teacher"] = None
            self.graft_options.pop("distill", None)
            return
        if self.graft_options.get("own_vocab"):
            raise ValueError("distillation needs the VAE to share the backbone's tokenizer (own_vocab=False)")
        self.__dict__["_teacher"] = Teacher(teacher, weight=weight, topk=topk, prefix_ids=prefix_ids)
        self.graft_options["distill"] = {"weight": float(weight), "topk": int(topk)}

    @property
    def teacher(self) -> Any:
        return self.__dict__.get("_teacher")

    @property
    def segment_budget(self) -> int:
        """Most tokens per segment the VAE was trained with (``config.max_tokens``; one less with a
        sinusoidal table, whose first position is bos): the default for prompts and decoding."""
        return int(self.vae.config.max_segment_tokens or self.vae.config.max_tokens)

    def segmenter(self, tokenizer: Any = None) -> Any:
        """The segmenter this model's text is cut with: the VAE's trained budget and the rule /
        ``min_tokens`` recorded at grafting or training (``graft_options["segmenter"]``)."""
        from graftlm.segmenter import RegexSegmenter

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
        With ``graft(..., attention="bidirectional")`` (research only, `graftlm.sllm.leak`) the body
        gets a 4D mask that also shows it the later sentences."""
        if self.graft_options.get("attention", "causal") == "bidirectional":
            from graftlm.sllm.leak import bidirectional_mask

            attention_mask = bidirectional_mask(attention_mask, inputs_embeds)
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
        vectors = self.encode_sentences(input_ids[sm], tm[sm])  # (N, d)
        x = vectors.new_zeros(B, S, vectors.shape[-1]).index_put((*sm.nonzero(as_tuple=True),), vectors)
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
        kl = None
        if self.teacher is not None and self.training and bool(pair.any()):
            from graftlm.sllm.distill import distillation_loss, packed_teacher

            t_ids, t_lp = self.teacher.targets(input_ids, tm, sm)
            ids_k, lp_k = packed_teacher(t_ids[:, 1:][pair], t_lp[:, 1:][pair], dec.target_mask)
            kl = distillation_loss(dec.packed_logits, ids_k, lp_k, torch.ones(len(ids_k), dtype=torch.bool,
                                                                              device=ids_k.device))
            loss = loss + self.teacher.weight * kl
        return SentenceLLMOutput(loss, dec_loss, term_loss, token_logprobs, target_mask, hidden, term_logits, kl)

    # ------------------------------------------------------------------ generation / io
    def generate(self, prompts: Any, tokenizer: Any = None, **kwargs: Any) -> Any:
        """Continue each prompt sentence by sentence; see `graftlm.sllm.generation.generate`."""
        from graftlm.sllm.generation import generate

        return generate(self, prompts, tokenizer, **kwargs)

    def continue_probability(self, prompts: Any, tokenizer: Any = None, **kwargs: Any) -> torch.Tensor:
        """(B,) P(another sentence follows) after each prompt; see `graftlm.sllm.generation`."""
        from graftlm.sllm.generation import continue_probability

        return continue_probability(self, prompts, tokenizer, **kwargs)

    def stream(self, prompts: Any, tokenizer: Any = None, **kwargs: Any):
        """Yield, per step, each row's new segment (None for finished rows); same options as generate."""
        from graftlm.sllm.generation import stream

        return stream(self, prompts, tokenizer, **kwargs)

    def save_pretrained(self, directory: Any, save_backbone: str = "reference", *,
                        model_card: dict[str, Any] | None = None) -> None:
        """Write config JSON + safetensors (LoRA in peft's format) + model card, atomically; see
        `graftlm.sllm.io.save_pretrained`."""
        from graftlm.sllm.io import save_pretrained

        save_pretrained(self, directory, save_backbone=save_backbone, model_card=model_card)

    @classmethod
    def from_pretrained(cls, directory: Any, **kwargs: Any) -> "SentenceLLM":
        """Load what `save_pretrained` wrote, from a folder or a model-hub id; same as `graftlm.load`
        (``backbone=``, ``device=``, ``revision=``, ``cache_dir=``, ``token=``)."""
        from graftlm.sllm.io import load

        return load(directory, **kwargs)

    @classmethod
    def from_official(cls, path: Any, config: Any, *, backbone: Any, **kwargs: Any) -> "SentenceLLM":
        """The authors' SentenceLLM ``.pth`` onto a transformers OPT ``backbone`` (never unpickled);
        ``use_ema=``, ``attention=``, ``backbone_config=``: see `graftlm.sllm.official`."""
        from graftlm.sllm.official import from_official

        return from_official(cls, path, config, backbone=backbone, **kwargs)
