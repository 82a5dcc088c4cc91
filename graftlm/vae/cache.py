"""KV cache of the sentence decoder.

Self-attention keys/values are written into preallocated buffers (B, H, capacity, D), one slot
per generated position; cross-attention keys/values of the sentence vector are computed once
and kept for the whole sentence.
"""

from __future__ import annotations

import torch


class LayerCache:
    """Self-attention K/V of one decoder layer plus its fixed cross-attention K/V."""

    def __init__(self, memory_kv: tuple[torch.Tensor, torch.Tensor], capacity: int) -> None:
        self.memory_kv = memory_kv
        self.capacity = capacity
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v (B, H, n, D) after the cached positions; return all keys/values so far."""
        n = k.shape[2]
        if self._k is None:
            b, h, _, d = k.shape
            self._k = k.new_empty(b, h, self.capacity, d)
            self._v = v.new_empty(b, h, self.capacity, d)
        if self.length + n > self.capacity:
            raise ValueError(f"KV cache full: capacity {self.capacity}, asked for {self.length + n} positions")
        self._k[:, :, self.length : self.length + n] = k
        self._v[:, :, self.length : self.length + n] = v
        self.length += n
        return self._k[:, :, : self.length], self._v[:, :, : self.length]


class DecoderCache:
    """One ``LayerCache`` per decoder layer; ``length`` = positions already decoded."""

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0
