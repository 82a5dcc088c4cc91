"""Training-step time of the SentenceVAE with the full softmax head vs the sampled head
(``train_head: sampled``): the quality recipe's shape (width 576, vocabulary 49,152, tied head
frozen like SmolLM2's embeddings, batch 32 segments of ~7 tokens, AdamW), random weights and
tokens (speed does not depend on them). Steps alternate between the two heads so both see the same
machine load; medians. The loss each reports is its own training loss, not a quality figure.

    python benchmarks/svae_head_step.py --threads 1 --steps 20 --negatives 4096
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from graftlm.vae import SentenceVAE, SentenceVAEConfig


def build(negatives: int | None, slots: int) -> tuple[SentenceVAE, torch.optim.Optimizer]:
    torch.manual_seed(0)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=49152, hidden_size=576, num_heads=9, num_layers=1, max_tokens=32,
                                        encoder="positional", conditioning="prefix", memory_slots=slots, loss="focal"))
    for part in (vae.encoder, vae.decoder):
        part.embedding.embed.weight.requires_grad_(False)
    vae.use_sampled_head(negatives)
    vae.train()
    return vae, torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=1e-3)


def step(vae: SentenceVAE, opt: torch.optim.Optimizer, ids: torch.Tensor, mask: torch.Tensor) -> float:
    t0 = time.perf_counter()
    loss = vae(ids, mask).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--negatives", type=int, default=4096)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 12, (a.batch,), generator=g)  # pydoc segments: mean ~7 tokens
    ids = torch.randint(3, 49152, (a.batch, int(lengths.max())), generator=g)
    mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
    runs = {"full": build(None, a.slots), f"sampled ({a.negatives} negatives)": build(a.negatives, a.slots)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(a.steps + 2):
        for name, (vae, opt) in runs.items():
            t = step(vae, opt, ids, mask)
            if i >= 2:  # the first steps allocate
                times[name].append(t)
    print(f"batch {a.batch}, {a.threads} thread(s), {a.steps} steps each (interleaved), load {os.getloadavg()[0]:.2f}")
    full = statistics.median(times["full"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name}: median step {med * 1e3:.1f} ms ({full / med:.2f}x the full head's speed)")


if __name__ == "__main__":
    main()
