"""Why the batch-8 lean loop's tokens/s depends on the output length: prefill is in the timed call.

    python scripts/batch8_lean_probe.py [--threads 2] [--batch 8] [--repeats 3]

Times, interleaved in one process (median of --repeats), the prefill alone (the prompts' one
forward) and the lean loop with 128 and 256 new tokens, SmolLM2-135M, 64-token prompts; prints
tokens/s and the share of each run spent in prefill.
"""

from __future__ import annotations

import argparse
import os

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from graftlm.bench.corpus import text_with_tokens
    from graftlm.bench.models import build_backbone
    from graftlm.evaluation.throughput import lean_loop_runner, prompt_batch, time_interleaved

    bb = build_backbone("smollm2-135m")
    _, ids = text_with_tokens(bb.tokenizer, args.batch * 64)
    x = prompt_batch(ids, args.batch, 64)

    @torch.inference_mode()
    def prefill() -> int:
        bb.model(input_ids=x, use_cache=True, logits_to_keep=1)
        return x.numel()

    t = time_interleaved({"prefill": (prefill, None), "lean 128": (lean_loop_runner(bb.model, x, 128), None),
                          "lean 256": (lean_loop_runner(bb.model, x, 256), None)}, repeats=args.repeats)
    pre = t["prefill"].median
    print(f"batch {args.batch}, {args.threads} threads, load {os.getloadavg()}")
    print(f"prefill of {x.numel()} prompt tokens: {pre:.2f} s")
    for k in ("lean 128", "lean 256"):
        n = t[k].tokens // args.batch
        print(f"{k}: {t[k].tokens_per_s:.1f} tok/s, prefill {100 * pre / t[k].median:.0f}% of the run, "
              f"decode-only {(t[k].tokens - 0) / (t[k].median - pre):.1f} tok/s ({n} tokens per row)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
