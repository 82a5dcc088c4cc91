"""Memory measurements: KV-cache bytes from the cache tensors, peak process memory.

``kv_cache_bytes`` sums the bytes of every key/value tensor a cache holds (HF ``DynamicCache``
and its per-layer objects, legacy tuples, or anything with ``key_cache``/``value_cache``), so it
measures what is really stored, not a formula.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from transformers import DynamicCache

from graftlm.plugins.adapter import cache_keyword


def _cache_tensors(cache: Any) -> Iterator[torch.Tensor]:
    if cache is None:
        return
    if isinstance(cache, torch.Tensor):
        yield cache
        return
    if isinstance(cache, (list, tuple)):
        for item in cache:
            yield from _cache_tensors(item)
        return
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    yield t
        return
    found = False
    for name in ("key_cache", "value_cache"):
        seq = getattr(cache, name, None)
        if seq is not None:
            found = True
            yield from _cache_tensors(list(seq))
    if not found:
        raise TypeError(f"don't know how to read the tensors of a {type(cache).__name__} cache")


def kv_cache_bytes(cache: Any) -> int:
    """Total bytes of the key/value tensors held by ``cache`` (each storage counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in _cache_tensors(cache):
        key = (t.data_ptr(), t.numel())
        if t.numel() == 0 or key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def cache_length(cache: Any) -> int:
    """Positions held by the cache (its sequence length)."""
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    first = next(iter(_cache_tensors(cache)), None)
    return 0 if first is None else int(first.shape[-2])


@torch.inference_mode()
def backbone_prefill_cache(model: torch.nn.Module, input_ids: torch.Tensor) -> Any:
    """Prefill ``input_ids`` (1, N) long through a causal LM; returns the filled ``DynamicCache``.

    Raises ValueError when N exceeds a hard position limit (learned position tables, e.g. OPT)."""
    limit = max_positions(model)
    if limit is not None and has_learned_positions(model) and input_ids.shape[-1] > limit:
        raise ValueError(f"{input_ids.shape[-1]} tokens exceed the backbone's {limit} learned positions")
    param = next(model.parameters(), None)
    if param is not None:
        input_ids = input_ids.to(param.device)

    cache = DynamicCache()
    model(input_ids=input_ids, **{cache_keyword(model): cache}, use_cache=True, logits_to_keep=1)
    return cache


def max_positions(model: torch.nn.Module) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def has_learned_positions(model: torch.nn.Module) -> bool:
    """True when positions come from a table (OPT, GPT-2): past it the model cannot run at all.
    RoPE models run past ``max_position_embeddings`` but were never trained there."""
    return getattr(model.config, "model_type", "") in ("opt", "gpt2", "gpt_neo", "biogpt")


@dataclass(frozen=True)
class KVMeasurement:
    """Cache bytes after prefilling ``tokens`` text tokens into ``positions`` cache positions."""

    label: str
    tokens: int
    positions: int
    bytes: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens


# ---- peak process memory -------------------------------------------------------------------

def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"VmHWM:\s+(\d+)\s+kB", f.read())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """Filled by ``track_peak_memory``: peak RSS during the block (bytes; lifetime peak if the
    kernel cannot reset it, see ``rss_is_lifetime``) and the CUDA allocator's peak when on GPU."""

    rss_before: int = 0
    peak_rss: int = 0
    rss_is_lifetime: bool = False
    cuda_peak: int | None = None

    @property
    def rss_increase(self) -> int:
        return max(self.peak_rss - self.rss_before, 0)


@contextmanager
def track_peak_memory(device: Any = "cpu") -> Iterator[PeakMemory]:
    """Measure peak memory over the ``with`` block (RSS on Linux; ``max_memory_allocated`` on CUDA)."""
    import psutil

    result = PeakMemory()
    reset = _reset_peak_rss()
    result.rss_is_lifetime = not reset
    result.rss_before = psutil.Process().memory_info().rss
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield result
    finally:
        if on_cuda:
            torch.cuda.synchronize()
            result.cuda_peak = int(torch.cuda.max_memory_allocated())
        hwm = _vm_hwm_bytes()
        if hwm is None:
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            result.rss_is_lifetime = True
        result.peak_rss = max(hwm, psutil.Process().memory_info().rss)
