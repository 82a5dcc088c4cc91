"""`graftlm.evaluate`: a SentenceLLM and its backbone measured on the same bytes.

One module below the demo, ``graftlm eval`` and ``graftlm bench``: what they report comes from
here (`graftlm.evaluation.likelihood` for bits per byte, `graftlm.evaluation.free_running` for
generation quality, `graftlm.evaluation.speed` for the shared speed and memory helpers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from graftlm.evaluation.free_running import generation_metrics
from graftlm.evaluation.likelihood import backbone_cost, bits_per_byte, sllm_cost
from graftlm.plugins import is_grafted

__all__ = ["EvaluationReport", "evaluate"]


@dataclass
class EvaluationReport:
    """What `evaluate` measured. Bits per byte are over ``bytes`` (the same UTF-8 bytes for both
    sides: every segment after each text's first); each PPL is per that side's own tokens."""

    texts: int
    bytes: int
    sllm_bits_per_byte: float
    backbone_bits_per_byte: float
    sllm_ppl: float
    backbone_ppl: float
    sllm_tokens: int
    backbone_tokens: int
    sllm_eos_bits_per_byte: float
    termination_accuracy: float
    termination_decisions: int
    stop_recall: float
    texts_skipped: int = 0
    generation: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def bits_per_byte_ratio(self) -> float:
        """SLLM ÷ backbone bits per byte (1.0 = as good as the backbone; lower is better)."""
        return self.sllm_bits_per_byte / self.backbone_bits_per_byte

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bits_per_byte_ratio"] = self.bits_per_byte_ratio
        return out

    def table(self) -> str:
        """A Markdown table of the likelihood figures (and generation, when measured)."""
        rows = [
            ("bits per byte (same bytes)", self.backbone_bits_per_byte, self.sllm_bits_per_byte),
            ("PPL (per own tokens; SLLM incl. eos)", self.backbone_ppl, self.sllm_ppl),
            ("tokens scored", self.backbone_tokens, self.sllm_tokens),
        ]
        lines = [f"{self.texts} held-out texts, {self.bytes:,} UTF-8 bytes scored", "",
                 "| measure | backbone | SentenceLLM | SLLM / backbone |", "|---|---:|---:|---:|"]
        for name, a, b in rows:
            lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {_ratio(b, a)} |")
        lines.append(f"| termination accuracy ({self.termination_decisions} decisions; stop recall "
                     f"{self.stop_recall:.2f}) | – | {self.termination_accuracy:.3f} | – |")
        if self.generation:
            for mode in ("greedy", "sampled"):
                g = self.generation.get(mode)
                if not g:
                    continue
                for key in ("judge_ppl", "unigram_entropy", "distinct_1", "distinct_2", "repeated_sentence_share",
                            "max_sentence_repeats"):
                    a, b = g["backbone"][key], g["sllm"][key]
                    lines.append(f"| {mode}: {key} | {_fmt(a)} | {_fmt(b)} | {_ratio(b, a)} |")
        return "\n".join(lines)


def _fmt(x: Any) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}" if abs(x) < 100 else f"{x:,.1f}"
    return str(x)


def _ratio(a: Any, b: Any) -> str:
    try:
        return f"×{a / b:.2f}"
    except (TypeError, ZeroDivisionError):
        return "–"


def evaluate(
    sllm: Any,
    texts: Sequence[str],
    *,
    backbone: torch.nn.Module,
    tokenizer: Any = None,
    segmenter: Any = None,
    generate: bool = False,
    new_tokens: int = 64,
    seed: int = 0,
    num_samples: int = 5,
    num_prompts: int | None = 10,
    batch_size: int = 4,
) -> EvaluationReport:
    """Score ``texts`` with the SentenceLLM and with the un-grafted ``backbone``, on the same bytes.

    ``texts``: held-out documents or paragraphs (each must fit the backbone's positions); texts
    with a single segment have nothing to score and are skipped (counted in ``texts_skipped``).
    ``tokenizer`` defaults to the one grafted with the model; ``segmenter`` to `sllm.segmenter`
    (the trained budget and rule). ``generate=True`` adds free-running generation metrics for
    both sides (`graftlm.evaluation.free_running`; ``new_tokens`` per continuation, ``seed``;
    prompts from the first ``num_prompts`` texts, None = all).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of str, got a single str; wrap it in a list")
    tokenizer = tokenizer if tokenizer is not None else getattr(sllm, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("evaluate needs the tokenizer: pass tokenizer=... (or graft(..., tokenizer=...))")
    if backbone is None or not hasattr(backbone, "parameters"):
        raise TypeError("backbone must be the un-grafted causal LM (a torch module), e.g. a fresh load of the model")

    if is_grafted(backbone):
        raise ValueError("backbone has been grafted (its LM head is gone): pass a fresh, un-grafted copy")
    segmenter = segmenter if segmenter is not None else sllm.segmenter(tokenizer)
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    kept = [t for t in texts if len(segmenter.split(t)) >= 2]
    if not kept:
        raise ValueError("no text has two or more segments: nothing to score (the first segment is context)")
    was_training = sllm.training, backbone.training
    sllm.eval()
    backbone.eval()
    try:
        ours, segments = sllm_cost(sllm, tokenizer, kept, segmenter, batch_size=batch_size)
        starts = [len(parts[0]) for parts in segments]
        theirs = backbone_cost(backbone, tokenizer, kept, starts, batch_size=max(1, batch_size // 2))
        n_bytes = sum(len(t[s:].encode("utf-8")) for t, s in zip(kept, starts))
        gen = None
        if generate:
            gen = generation_metrics(sllm, backbone, tokenizer, segments[:num_prompts], segmenter=segmenter, new_tokens=new_tokens,
                                     seed=seed, num_samples=num_samples)
    finally:
        sllm.train(was_training[0])
        backbone.train(was_training[1])
    return EvaluationReport(
        texts=len(kept),
        bytes=n_bytes,
        sllm_bits_per_byte=bits_per_byte(ours.nats, n_bytes),
        backbone_bits_per_byte=bits_per_byte(theirs.nats, n_bytes),
        sllm_ppl=math.exp(ours.nats / ours.tokens),
        backbone_ppl=math.exp(theirs.nats / theirs.tokens),
        sllm_tokens=ours.tokens,
        backbone_tokens=theirs.tokens,
        sllm_eos_bits_per_byte=bits_per_byte(ours.eos_nats, n_bytes),
        termination_accuracy=ours.term_correct / ours.term_total,
        termination_decisions=ours.term_total,
        stop_recall=ours.stop_hits / len(kept),
        texts_skipped=len(texts) - len(kept),
        generation=gen,
        settings={"segmenter": getattr(segmenter, "settings", lambda: {})(), "new_tokens": new_tokens, "seed": seed,
                  "num_prompts": num_prompts},
    )
