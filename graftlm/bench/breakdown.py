"""Where a SentenceLLM's generation time goes: wall time per sub-module, via forward hooks.

Compares, per output token, the measured share of each part (VAE decoder layers, its vocabulary
head, VAE encoder, backbone body) with its share of the MAC count; the remainder ("other") is
Python and tensor bookkeeping outside those modules (generation loop, masks, caches).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


@contextmanager
def _timed(modules: dict[str, torch.nn.Module], acc: dict[str, float]) -> Iterator[None]:
    handles = []
    starts: dict[str, list[float]] = {k: [] for k in modules}
    for name, mod in modules.items():
        def pre(_m, _i, name=name):
            starts[name].append(time.perf_counter())

        def post(_m, _i, _o, name=name):
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - starts[name].pop()

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def sllm_time_breakdown(sllm: Any, run: Callable[[], int]) -> dict[str, float]:
    """Seconds spent in each part during one ``run()`` (a `sllm_runner`), plus ``total``,
    ``other`` and ``tokens``. Parts: ``decoder_head`` (vocabulary projection), ``decoder`` (the
    decoder without its head), ``encoder``, ``body`` (backbone layers)."""
    dec = sllm.vae.decoder
    head = getattr(dec, "lm_head", None)
    modules = {"decoder_all": dec, "encoder": sllm.vae.encoder, "body": sllm.body}
    if head is not None:
        modules["decoder_head"] = head
    acc: dict[str, float] = {}
    with _timed(modules, acc):
        t0 = time.perf_counter()
        tokens = run()
        total = time.perf_counter() - t0
    out = {"total": total, "tokens": float(tokens)}
    out["decoder_head"] = acc.get("decoder_head", 0.0)
    out["decoder"] = acc.get("decoder_all", 0.0) - out["decoder_head"]
    out["encoder"] = acc.get("encoder", 0.0)
    out["body"] = acc.get("body", 0.0)
    out["other"] = total - out["decoder_head"] - out["decoder"] - out["encoder"] - out["body"]
    return out
