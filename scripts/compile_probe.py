"""Does `torch.compile` (CPU inductor) pay for the SentenceLLM or for the lean loop?

    python scripts/compile_probe.py [--backbone smollm2-135m] [--threads 2] [--new-tokens 64] [--repeats 3]

Variants, each in one process, timed interleaved (median of --repeats) after a warm-up that also
pays for compilation (compile seconds printed separately):

* lean loop: the backbone's forward eager vs ``torch.compile(dynamic=True)``;
* SentenceLLM-H1 (random SentenceVAE, fixed sentence length): eager; the sentence decoder's step
  (``vae.decoder``) compiled; the backbone's sentence step (``body``) compiled; both.

A compiled variant counts only if it is exact: its greedy tokens equal the eager ones (cached
decoding, itself tested equal to uncached in tests/), and batch == alone (each row of a batch of 2
equals that prompt generated alone). Prints one table; nothing is kept in the library unless it
wins there.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sentence-len", type=int, default=8)
    p.add_argument("--only", nargs="*", default=None, help="variants to run (default all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from graftlm.bench.corpus import text_with_tokens
    from graftlm.bench.models import build_backbone
    from graftlm.bench.suite import build_sllm, prompt_segments, shared_copy
    from graftlm.evaluation.throughput import lean_generate, prompt_batch, time_interleaved

    bb = build_backbone(args.backbone)
    _, ids = text_with_tokens(bb.tokenizer, 2 * args.prompt_tokens)
    x2 = prompt_batch(ids, 2, args.prompt_tokens)
    x1 = x2[:1]
    n, L = args.new_tokens, args.sentence_len
    variants = {}
    compiled_lean = shared_copy(bb.model)
    compiled_lean.forward = torch.compile(compiled_lean.forward, dynamic=True)
    variants["lean eager"] = ("lean", bb.model)
    variants["lean compiled"] = ("lean", compiled_lean)
    for name, parts in (("sllm eager", ()), ("sllm decoder compiled", ("decoder",)),
                        ("sllm body compiled", ("body",)), ("sllm both compiled", ("decoder", "body"))):
        sllm = build_sllm(bb, 1)
        if "decoder" in parts:
            sllm.vae.decoder.forward = torch.compile(sllm.vae.decoder.forward, dynamic=True)
        if "body" in parts:
            sllm.body.forward = torch.compile(sllm.body.forward, dynamic=True)
        variants[name] = ("sllm", sllm)
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}

    def make(kind, model, x):
        if kind == "lean":
            return lambda: lean_generate(model, x, n)
        seg = prompt_segments(bb.tokenizer, x, model.vae.config, L)
        n_prompt = int(seg.sentence_mask.sum(1).max())

        def run():
            with torch.inference_mode():
                out = model.generate(seg, None, max_sentences=n_prompt + -(-n // L), max_new_tokens=n,
                                     max_tokens_per_sentence=L, ignore_stop=True, ignore_eos=True,
                                     do_sample=False, return_dict=True)
            return torch.tensor([sum(s, []) for s in out.token_ids])
        return run

    outputs, compile_s, exact = {}, {}, {}
    for name, (kind, model) in variants.items():
        t0 = time.perf_counter()
        outputs[name] = make(kind, model, x1)()  # first call: compiles
        compile_s[name] = time.perf_counter() - t0
        both = make(kind, model, x2)()
        alone2 = make(kind, model, x2[1:])()
        exact[name] = bool(torch.equal(both[:1], outputs[name]) and torch.equal(both[1:], alone2))
        print(f"{name}: first call {compile_s[name]:.1f} s, batch == alone: {exact[name]}", flush=True)
    for name, (kind, _) in variants.items():
        ref = outputs[f"{kind} eager"] if f"{kind} eager" in outputs else outputs[name]
        exact[name] = exact[name] and bool(torch.equal(outputs[name], ref))

    def counted(f):
        return lambda: (f(), x1.shape[0] * n)[1]

    timings = time_interleaved({k: (counted(make(kind, m, x1)), None) for k, (kind, m) in variants.items()},
                               repeats=args.repeats)
    print(f"\n{args.backbone}, {args.threads} threads, batch 1, {n} new tokens, L={L}, "
          f"load {[round(v, 2) for v in __import__('os').getloadavg()]}")
    print("| variant | tokens/s | × eager | first call s | exact (= eager, batch == alone) |")
    print("|---|---:|---:|---:|---|")
    for k, t in timings.items():
        base = timings.get(f"{variants[k][0]} eager")
        ratio = base.median / t.median if base else float("nan")
        print(f"| {k} | {t.tokens_per_s:.1f} | {ratio:.2f} | {compile_s[k]:.1f} | {'yes' if exact[k] else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
