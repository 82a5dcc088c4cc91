"""Free-running generation, measured the standard way for both sides.

Each held-out text's first half (its first ⌊n/2⌋ segments, at least one) is the prompt; the
SentenceLLM and the backbone alone each continue it to the same number of tokens (the judge's
tokens: the continuation is cut after ``new_tokens`` of them; the SentenceLLM's stop head and the
backbone's eos are ignored so both write that much), greedy and sampled. Per side:

* ``judge_ppl``: exp(mean −log p) of the continuation's tokens under the un-grafted backbone,
  given the prompt (low alone can be gamed by repetition, hence the next three);
* ``unigram_entropy``: entropy (bits) of the token distribution within each continuation, mean;
* ``distinct_1`` / ``distinct_2``: unique / total token n-grams within each continuation, mean;
* ``repeated_sentence_share``: share of a continuation's segments that repeat an earlier one, and
  ``max_sentence_repeats``: the most times one segment occurs in one continuation (worst case).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from graftlm.evaluation.likelihood import token_char_starts

SAMPLING = {"temperature": 0.8, "top_p": 0.95}


def prompts_of(segments: Sequence[Sequence[str]]) -> list[str]:
    """The first half of each text, in whole segments (at least one)."""
    return ["".join(parts[: max(1, len(parts) // 2)]) for parts in segments]


def backbone_continue(backbone: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], *, new_tokens: int,
                      do_sample: bool, seed: int) -> list[str]:
    """The backbone's own continuation of each prompt: exactly ``new_tokens`` tokens (eos suppressed)."""
    device = next(backbone.parameters()).device
    out = []
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)
        kwargs: dict[str, Any] = dict(do_sample=True, top_k=0, **SAMPLING) if do_sample else dict(do_sample=False)
        torch.manual_seed(seed + i)
        gen = backbone.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, pad_token_id=_pad(tokenizer), **kwargs)
        out.append(tokenizer.decode(gen[0, ids.shape[1]:].tolist(), skip_special_tokens=True))
    return out


def sllm_continue(sllm: Any, tokenizer: Any, prompts: Sequence[str], *, new_tokens: int, do_sample: bool,
                  seed: int, segmenter: Any = None) -> list[str]:
    """The SentenceLLM's continuation of each prompt, ``new_tokens`` tokens (stop head ignored)."""
    out = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator(device=sllm.device).manual_seed(seed + i)
        kwargs: dict[str, Any] = dict(do_sample=True, generator=generator, **SAMPLING) if do_sample else {}
        text = sllm.generate([prompt], tokenizer=tokenizer, max_new_tokens=new_tokens + 8, ignore_stop=True,
                             segmenter=segmenter, **kwargs)[0]
        out.append(text)
    return out


def _pad(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else (getattr(tokenizer, "eos_token_id", None) or 0)


@torch.no_grad()
def judge(judge_model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str],
          *, new_tokens: int) -> tuple[list[list[int]], list[str], float, int]:
    """Cut each continuation after ``new_tokens`` judge tokens and score it given its prompt.

    Returns (continuation token ids, cut continuation texts, total nats, scored tokens)."""
    device = next(judge_model.parameters()).device
    all_ids, cut_texts, nats, count = [], [], 0.0, 0
    for prompt, cont in zip(prompts, continuations):
        ids, starts, special = token_char_starts(tokenizer, prompt + cont)
        span = [j for j in range(1, len(ids)) if not special[j] and starts[j] >= len(prompt)][:new_tokens]
        if not span:
            all_ids.append([])
            cut_texts.append("")
            continue
        end = span[-1] + 1
        cut = cont[: (starts[end] - len(prompt)) if end < len(ids) and starts[end] > len(prompt) else len(cont)]
        x = torch.tensor([ids[:end]], device=device)
        logits = judge_model(input_ids=x).logits[0, :-1].float()
        nll = F.cross_entropy(logits, x[0, 1:], reduction="none").cpu()
        nats += float(nll[[j - 1 for j in span]].sum())
        count += len(span)
        all_ids.append([ids[j] for j in span])
        cut_texts.append(cut)
    return all_ids, cut_texts, nats, count


def unigram_entropy(ids: Sequence[int]) -> float:
    if not ids:
        return 0.0
    counts = Counter(ids)
    n = len(ids)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def distinct(ids: Sequence[int], n: int) -> float:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sentence_repeats(segmenter: Any, text: str) -> tuple[float, int]:
    """(share of segments repeating an earlier one, most occurrences of one segment)."""
    parts = [p.strip().lower() for p in segmenter.split(text)]
    parts = [p for p in parts if p]
    if not parts:
        return 0.0, 0
    counts = Counter(parts)
    return (len(parts) - len(counts)) / len(parts), max(counts.values())


def side_metrics(token_ids: list[list[int]], texts: list[str], nats: float, count: int, segmenter: Any) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    repeats = [sentence_repeats(segmenter, t) for t in texts]
    return {
        "judge_ppl": math.exp(nats / count) if count else float("nan"),
        "tokens": count,
        "unigram_entropy": mean([unigram_entropy(ids) for ids in token_ids]),
        "distinct_1": mean([distinct(ids, 1) for ids in token_ids]),
        "distinct_2": mean([distinct(ids, 2) for ids in token_ids]),
        "repeated_sentence_share": mean([r for r, _ in repeats]),
        "max_sentence_repeats": max((m for _, m in repeats), default=0),
    }


def generation_metrics(sllm: Any, backbone: torch.nn.Module, tokenizer: Any, segments: Sequence[Sequence[str]], *,
                       segmenter: Any, new_tokens: int = 64, seed: int = 0, num_samples: int = 5,
                       modes: Sequence[str] = ("greedy", "sampled")) -> dict[str, Any]:
    """Both sides' continuations of the same held-out prompts, judged by the backbone (see module doc)."""
    prompts = prompts_of(segments)
    result: dict[str, Any] = {"prompts": len(prompts), "new_tokens": new_tokens, "seed": seed,
                              "sampling": dict(SAMPLING), "samples": []}
    for mode in modes:
        sample = mode == "sampled"
        ours = sllm_continue(sllm, tokenizer, prompts, new_tokens=new_tokens, do_sample=sample, seed=seed,
                             segmenter=segmenter)
        theirs = backbone_continue(backbone, tokenizer, prompts, new_tokens=new_tokens, do_sample=sample, seed=seed)
        result[mode] = {}
        cut: dict[str, list[str]] = {}
        for side, texts in (("sllm", ours), ("backbone", theirs)):
            ids, cut[side], nats, count = judge(backbone, tokenizer, prompts, texts, new_tokens=new_tokens)
            result[mode][side] = side_metrics(ids, cut[side], nats, count, segmenter)
        for i in range(min(num_samples, len(prompts))):
            result["samples"].append({"mode": mode, "prompt": prompts[i], "sllm": cut["sllm"][i],
                                      "backbone": cut["backbone"][i]})
    return result
