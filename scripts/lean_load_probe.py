"""Does the way SmolLM2 is loaded, or the transformers version, move the lean loop's speed?

    python scripts/lean_load_probe.py [--threads 2] [--batches 1 8] [--new-tokens 128] [--repeats 3]
    PYTHONPATH=DIR python scripts/lean_load_probe.py ...   # DIR: `pip install --target DIR transformers==X`

The 2026-11-23 benchmark (transformers 5.23.0, SmolLM2 loaded from its GGUF file directly) measured
the batch-8 lean loop at 109 tok/s; later runs (transformers 5.25.0, weights from graftlm's
de-quantised safetensors cache) measured 70-83. This times, interleaved in one process (median of
--repeats), the lean loop on the model as graftlm loads it (`load_smollm2`) and on the model
transformers builds from the GGUF file, at each batch size, and prints the transformers version,
so running it under two versions separates the two candidate causes. An OPT-125M-sized model
with random weights (no loading question at all) is timed alongside as a control. It also checks
that both SmolLM2 loads give the same greedy tokens.
"""

from __future__ import annotations

import argparse
import os

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM

    from graftlm.backbones import SMOLLM2_GGUF, load_smollm2, smollm2_folder
    from graftlm.bench.corpus import text_with_tokens
    from graftlm.bench.models import build_backbone
    from graftlm.evaluation.throughput import lean_generate, lean_loop_runner, prompt_batch, time_interleaved

    cached, tok = load_smollm2()
    gguf = AutoModelForCausalLM.from_pretrained(str(smollm2_folder()), gguf_file=SMOLLM2_GGUF, dtype=torch.float32,
                                                attn_implementation="sdpa").eval()
    opt = build_backbone("opt-125m")
    _, ids = text_with_tokens(tok, max(args.batches) * 64)
    _, opt_ids = text_with_tokens(opt.tokenizer, max(args.batches) * 64)
    models = {"smollm2 cache (load_smollm2)": (cached, ids), "smollm2 gguf (from_pretrained)": (gguf, ids),
              "opt-125m size (random)": (opt.model, opt_ids)}
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.new_tokens} new tokens, 64-token prompts, load before {os.getloadavg()}")
    x1 = prompt_batch(ids, 1, 64)
    with torch.inference_mode():
        same = torch.equal(lean_generate(cached, x1, 16), lean_generate(gguf, x1, 16))
    print(f"same greedy tokens (16, batch 1): {same}")
    for b in args.batches:
        t = time_interleaved({k: (lean_loop_runner(m, prompt_batch(tokens, b, 64), args.new_tokens), None)
                              for k, (m, tokens) in models.items()}, repeats=args.repeats)
        for k, v in t.items():
            print(f"batch {b}, {k}: {v.tokens_per_s:.1f} tok/s (median {v.median:.2f} s)")
    print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
