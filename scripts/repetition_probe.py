"""Repetition control measured on a trained SentenceLLM: greedy continuations of held-out prompts
(each text's first half), ``--new-tokens`` judge tokens each (stop head ignored, as in
`graftlm.evaluation.free_running`), with no control, ``no_repeat_sentence``, ``repetition_penalty``
and both; per setting the judge PPL under the un-grafted SmolLM2 and the repetition metrics of
`graftlm.evaluation.free_running` (repeated-sentence share, worst repeats of one sentence,
distinct-2), plus how many rows stop by themselves within the budget with the stop head on.

    python scripts/repetition_probe.py MODEL_DIR HELDOUT.jsonl --prompts 12 --new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import graftlm
from graftlm.backbones import load_smollm2
from graftlm.evaluation.free_running import judge, prompts_of, side_metrics

SETTINGS = {
    "none": {},
    "no_repeat_sentence": {"no_repeat_sentence": True},
    "repetition_penalty=1.3": {"repetition_penalty": 1.3},
    "both": {"no_repeat_sentence": True, "repetition_penalty": 1.3},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("heldout", help="JSON lines with a 'text' field")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sllm = graftlm.load(a.model).eval()
    backbone, tokenizer = load_smollm2()
    segmenter = sllm.segmenter(tokenizer)
    texts = [json.loads(line)["text"] for line in open(a.heldout, encoding="utf-8") if line.strip()]
    texts = [t for t in texts if len(segmenter.split(t)) >= 2][: a.prompts]
    prompts = prompts_of([segmenter.split(t) for t in texts])
    print(f"{len(prompts)} prompts, {a.new_tokens} judge tokens, greedy, load {os.getloadavg()[0]:.2f}")
    print("| setting | judge PPL | repeated-sentence share | max repeats of one sentence | distinct-2 |")
    print("|---|---:|---:|---:|---:|")
    for name, controls in SETTINGS.items():
        with torch.inference_mode():
            outs = [sllm.generate([q], tokenizer=tokenizer, max_new_tokens=a.new_tokens + 8, ignore_stop=True,
                                  segmenter=segmenter, **controls)[0] for q in prompts]
        ids, cut, nats, count = judge(backbone, tokenizer, prompts, outs, new_tokens=a.new_tokens)
        m = side_metrics(ids, cut, nats, count, segmenter)
        print(f"| {name} | {m['judge_ppl']:.1f} | {m['repeated_sentence_share']:.1%} | "
              f"{m['max_sentence_repeats']} | {m['distinct_2']:.2f} |", flush=True)
    for name, controls in SETTINGS.items():
        print(f"sample ({name}): {sllm.generate([prompts[0]], tokenizer=tokenizer, max_new_tokens=a.new_tokens, ignore_stop=True, segmenter=segmenter, **controls)[0]!r}"[:400])


if __name__ == "__main__":
    main()
