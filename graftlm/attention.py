"""One attention function for all of graftlm, with a pluggable backend.

``attention(q, k, v)`` runs xformers' ``memory_efficient_attention`` when that can work (xformers
imports, has the operator, tensors are on CUDA, and a trial on real inputs of this kind
succeeded) and ``torch.nn.functional.scaled_dot_product_attention`` (SDPA) everywhere else.
The verdict of a trial is cached per (device, dtype, head_dim, mask kind), so a failing
xformers costs one exception per kind, not one per call.

Masks: ``key_padding_mask`` is (B, Lk) bool, True = a real key. ``causal=True`` lets query i
see keys j <= i + (Lk - Lq): the query block is the *last* Lq positions of the key sequence,
which is what cached decoding needs (a single new query sees every cached key).
A query row whose keys are all masked returns zeros, never NaN.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "xformers")
_backend = "auto"
_xformers_verdicts: dict[tuple, bool] = {}


def set_attention_backend(name: str) -> None:
    """Select ``"auto"`` (xformers when it can run, else SDPA), ``"sdpa"`` or ``"xformers"``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    _backend = name


def get_attention_backend() -> str:
    return _backend


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Use backend ``name`` inside a ``with`` block, then restore the previous one."""
    previous = _backend
    set_attention_backend(name)
    try:
        yield
    finally:
        set_attention_backend(previous)


@functools.lru_cache(maxsize=1)
def _xformers_ops():
    """xformers.ops if it imports and offers memory_efficient_attention, else None (cached: a
    failing import is not cached by Python and would cost a sys.path scan per call)."""
    try:
        ops = importlib.import_module("xformers.ops")
    except Exception:  # ImportError, or a broken install raising anything at import time
        return None
    return ops if hasattr(ops, "memory_efficient_attention") else None


def _on_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda


def _mask_kind(causal: bool, key_padding_mask: torch.Tensor | None) -> str:
    return ("causal" if causal else "full") + ("+padding" if key_padding_mask is not None else "")


def _verdict_key(q: torch.Tensor, causal: bool, key_padding_mask: torch.Tensor | None) -> tuple:
    return (str(q.device), q.dtype, q.shape[-1], _mask_kind(causal, key_padding_mask))


def resolved_backend(
    q: torch.Tensor, *, causal: bool = False, key_padding_mask: torch.Tensor | None = None
) -> str:
    """The backend ``attention`` would use for these inputs: ``"sdpa"`` or ``"xformers"``.

    With ``"auto"``, an untried kind of input reports ``"xformers"`` when xformers is usable on
    this device (the trial happens on the first real call).
    """
    if _backend == "sdpa":
        return "sdpa"
    usable = _xformers_ops() is not None and _on_cuda(q)
    if _backend == "xformers":
        if not usable:
            raise RuntimeError(
                "attention backend 'xformers' was forced but cannot run: "
                + ("xformers is not installed or lacks memory_efficient_attention (pip install 'graftlm[cuda]')"
                   if _xformers_ops() is None else f"tensors are on {q.device}, xformers needs CUDA")
                + "; use set_attention_backend('auto') or 'sdpa'"
            )
        return "xformers"
    if not usable:
        return "sdpa"
    return "xformers" if _xformers_verdicts.get(_verdict_key(q, causal, key_padding_mask), True) else "sdpa"


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects (B, H, L, D) tensors, got q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention shapes do not match: q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(f"key_padding_mask must be torch.bool (True = real key), got {key_padding_mask.dtype}")
        if key_padding_mask.shape != (k.shape[0], k.shape[2]):
            raise ValueError(
                f"key_padding_mask must be (B, Lk) = {(k.shape[0], k.shape[2])}, got {tuple(key_padding_mask.shape)}"
            )


def build_mask(
    q_len: int, k_len: int, *, causal: bool, key_padding_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """Boolean mask broadcastable to (B, H, Lq, Lk), True = may attend; None if nothing is masked."""
    mask = None
    if causal and q_len > 1:
        offset = k_len - q_len  # queries are the last q_len positions of the key sequence
        rows = torch.arange(q_len, device=device)[:, None] + offset
        mask = (torch.arange(k_len, device=device)[None, :] <= rows)[None, None]
    if key_padding_mask is not None:
        pad = key_padding_mask[:, None, None, :]
        mask = pad if mask is None else mask & pad
    return mask


def _sdpa(q, k, v, causal, key_padding_mask, dropout_p):
    if key_padding_mask is None and (not causal or q.shape[2] == 1 or q.shape[2] == k.shape[2]):
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=causal and q.shape[2] > 1, dropout_p=dropout_p
        )
    mask = build_mask(q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask, device=q.device)
    empty = ~mask.any(-1, keepdim=True)  # rows with no visible key
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p)
    return out.masked_fill(empty, 0.0)


def _xformers(q, k, v, causal, key_padding_mask, dropout_p):
    ops = _xformers_ops()
    q_len, k_len = q.shape[2], k.shape[2]
    bias, empty = None, None
    if key_padding_mask is None and causal and q_len == k_len:
        bias = ops.LowerTriangularMask()
    elif key_padding_mask is not None or (causal and q_len > 1):
        mask = build_mask(q_len, k_len, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
        empty = ~mask.any(-1, keepdim=True)
        mask = (mask | empty).expand(q.shape[0], q.shape[1], q_len, k_len)
        # xformers wants the bias' last dim padded to a multiple of 8 in memory, then sliced
        padded = math.ceil(k_len / 8) * 8
        storage = torch.zeros(*mask.shape[:3], padded, device=q.device, dtype=q.dtype)
        bias = storage[..., :k_len]
        bias.masked_fill_(~mask, float("-inf"))
    out = ops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p
    ).transpose(1, 2)
    return out if empty is None else out.masked_fill(empty, 0.0)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention. q (B, H, Lq, D), k/v (B, H, Lk, D) → (B, H, Lq, D).

    ``key_padding_mask`` (B, Lk) bool, True = real key. ``causal``: query i sees keys
    ``j <= i + Lk - Lq``. Rows with no visible key give zeros. ``dropout_p`` is applied as given
    (pass 0.0 in eval mode).
    """
    _check(q, k, v, key_padding_mask)
    backend = resolved_backend(q, causal=causal, key_padding_mask=key_padding_mask)
    if backend == "sdpa":
        return _sdpa(q, k, v, causal, key_padding_mask, dropout_p)
    key = _verdict_key(q, causal, key_padding_mask)
    if _backend == "xformers" or _xformers_verdicts.get(key):
        return _xformers(q, k, v, causal, key_padding_mask, dropout_p)
    try:  # first call of this kind under "auto": the trial is the real call
        out = _xformers(q, k, v, causal, key_padding_mask, dropout_p)
    except Exception:  # NotImplementedError "No operator found", unsupported head dim, ...
        _xformers_verdicts[key] = False
        return _sdpa(q, k, v, causal, key_padding_mask, dropout_p)
    _xformers_verdicts[key] = True
    return out
