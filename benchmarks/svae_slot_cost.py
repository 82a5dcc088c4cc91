"""What do prefix slots cost at generation? Prints, for a SentenceVAE of SmolLM2-135M's shape
(width 576, 9 heads, vocabulary 49,152, tied head, 1 decoder layer), the time of one KV-cached
decoder step (head included) and the per-sentence cost of the conditioning: cross-attention's
memory K/V, or the m prefix slots run through every layer (`SentenceDecoder.new_cache`), plus
each as a share of a step and of a whole sentence of ``--tokens`` steps. Interleaved repeats,
median; random weights (speed does not depend on training). Issue 19's target: slots < 10 %.

    python benchmarks/svae_slot_cost.py --threads 1 --slots 1 2 4 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from graftlm.vae import SentenceVAE, SentenceVAEConfig


def model(conditioning: str, slots: int, layers: int) -> SentenceVAE:
    torch.manual_seed(0)
    return SentenceVAE(SentenceVAEConfig(vocab_size=49152, hidden_size=576, num_heads=9, num_layers=layers,
                                         max_tokens=32, encoder="positional", conditioning=conditioning,
                                         memory_slots=slots)).eval()


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.inference_mode()
def measure(vae: SentenceVAE, batch: int, tokens: int, repeats: int) -> tuple[float, float]:
    """(seconds of new_cache, seconds of one cached step at position ``tokens // 2``)."""
    dec = vae.decoder
    v = torch.randn(batch, 576)
    ids = torch.randint(3, 49152, (batch, tokens))
    setup = timed(lambda: dec.new_cache(v, tokens + 1), repeats)

    def one_step() -> None:
        cache = dec.new_cache(v, tokens + 1)
        dec(v, ids[:, : tokens // 2], cache)
        t0 = time.perf_counter()
        dec(v, ids[:, tokens // 2 : tokens // 2 + 1], cache)
        one_step.seconds.append(time.perf_counter() - t0)

    one_step.seconds = []
    for _ in range(repeats):
        one_step()
    return setup, statistics.median(one_step.seconds)


def macs(conditioning: str, m: int, layers: int, tokens: int, h: int = 576, ffn: int = 2304, vocab: int = 49152):
    """Analytic multiply-accumulates per row: (conditioning setup, one step at mid-sentence)."""
    block = 4 * h * h + 2 * h * ffn  # qkv + out projections, FFN
    context = tokens // 2 + (m if conditioning == "prefix" else 0)
    step = layers * (block + 2 * h * context + (2 * h * h + 2 * h if conditioning == "cross" else 0)) + h * vocab
    setup = layers * 2 * h * h if conditioning == "cross" else layers * m * (block + h * (m + 1))
    return setup, step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=8, help="tokens per sentence (pydoc segments: ~7 + eos)")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"batch {a.batch}, {a.tokens} tokens/sentence, {a.layers} decoder layer(s), {a.threads} thread(s), "
          f"load {os.getloadavg()[0]:.2f}")
    print("| conditioning | per-sentence setup ms | cached step ms | setup / step | setup / sentence | "
          "MACs: setup / step | MACs: sentence vs cross |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cross_setup, cross_step = macs("cross", 1, a.layers, a.tokens)
    variants = [("cross", 1)] + [("prefix", m) for m in a.slots]
    for conditioning, m in variants:
        setup, step = measure(model(conditioning, m, a.layers), a.batch, a.tokens, a.repeats)
        name = "cross-attention (1 vector)" if conditioning == "cross" else f"prefix, {m} slots"
        mac_setup, mac_step = macs(conditioning, m, a.layers, a.tokens)
        sentence = (mac_setup + a.tokens * mac_step) / (cross_setup + a.tokens * cross_step)
        print(f"| {name} | {setup * 1e3:.2f} | {step * 1e3:.2f} | {setup / step:.1%} | "
              f"{setup / (setup + a.tokens * step):.1%} | {mac_setup / mac_step:.1%} | {sentence - 1:+.1%} |")


if __name__ == "__main__":
    main()
