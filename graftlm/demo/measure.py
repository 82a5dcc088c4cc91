"""The closing table's measurements, all taken in the demo run itself on the same machine.

Quality comes from `graftlm.evaluate` (bits per byte of the same held-out bytes for the
SentenceLLM and the backbone on its natural tokenization, termination accuracy, and optionally
free-running generation judged by the backbone); speed and KV memory from
`graftlm.evaluation.speed`; backbone forward passes per sentence are one per token for the
backbone, one per sentence for the SentenceLLM (plus tokens + 1 steps of the sentence decoder).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from graftlm.evaluation import evaluate
from graftlm.evaluation.speed import (
    KV_TOKENS,
    PROMPT_TOKENS,
    kv_bytes,
    text_tokens,
    throughput,
)

GENERATION_PROMPTS = 4
GENERATION_TOKENS = 32


@torch.inference_mode()
def quality(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, texts: list[str], segmenter: Any, *,
            generate: bool) -> dict[str, Any]:
    """`graftlm.evaluate` on ``texts``, flattened for the run's state (``generation`` kept nested)."""
    report = evaluate(sllm, texts, backbone=backbone, tokenizer=tokenizer, segmenter=segmenter, generate=False)
    out = {k: v for k, v in report.to_dict().items() if k not in ("generation", "settings")}
    out["eval_texts"] = out.pop("texts")
    if generate:
        prompts = texts[:GENERATION_PROMPTS]
        gen = evaluate(sllm, prompts, backbone=backbone, tokenizer=tokenizer, segmenter=segmenter, generate=True,
                       new_tokens=GENERATION_TOKENS, num_samples=GENERATION_PROMPTS)
        out["generation"] = gen.generation
    return out


def measure_all(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, *, heldout_docs: list[str], segmenter: Any,
                new_tokens: int, sentence_len: int, mean_segment_tokens: float, texts: list[str] | None = None,
                eval_texts: int = 16, deadline: float | None = None, generate: bool = True,
                progress: Callable[[str], None] = lambda _: None, **_unused: Any) -> dict[str, Any]:
    """All closing-table numbers as one flat dict (see the module docstring). ``deadline``
    (``time.monotonic()`` value): the generation metrics are skipped when too little time is left."""
    sllm.eval()
    backbone.eval()
    texts = texts if texts is not None else [t for t in heldout_docs if len(segmenter.split(t)) >= 2][:eval_texts]
    out: dict[str, Any] = {}
    progress("bits per byte")
    t0 = time.monotonic()
    out.update(quality(sllm, backbone, tokenizer, texts, segmenter, generate=False))
    if generate and texts:
        left = None if deadline is None else deadline - time.monotonic()
        if left is None or left > 6 * (time.monotonic() - t0) + 30:
            progress("generation quality")
            out["generation"] = quality(sllm, backbone, tokenizer, texts, segmenter, generate=True)["generation"]
        else:
            out["generation_skipped"] = f"not enough time left ({left:.0f} s)"
    ids = text_tokens(tokenizer, heldout_docs, max(KV_TOKENS, PROMPT_TOKENS))
    progress("tokens/s")
    out.update(throughput(sllm, backbone, tokenizer, ids, new_tokens=new_tokens, sentence_len=sentence_len))
    progress("KV-cache bytes")
    out.update(kv_bytes(sllm, backbone, tokenizer, ids, segmenter))
    progress("steps per sentence")
    out.update({"backbone_steps_per_sentence": mean_segment_tokens, "sllm_body_steps_per_sentence": 1.0,
                "sllm_decoder_steps_per_sentence": mean_segment_tokens + 1.0})
    return out
