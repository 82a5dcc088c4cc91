"""The graft-time self-test: cheap probes that a backbone body computes what a SentenceLLM relies on.

`graft` runs it on the un-stripped body (``adapter.body(model)``) for every adapter that does not
declare the architecture verified, before anything is modified. One batch of three rows, five
random sentence vectors each (``a`` = five vectors, ``p`` = random padding, masked out):

* row 0 ``a0 a1 a2 a3 a4``: the reference;
* row 1 ``p p a0 a1 a2``: leading padding, positions from the mask (batched generation's layout);
* row 2 ``a0 a1 z a3 a4``: sentence 2 perturbed (causality: positions 0-1 must not change,
  position 2 must). A causal body also cannot be changed by trailing padding (training batches'
  layout), so that needs no row of its own.

The batch runs as a prefill with the body's cache; then one cached step appends ``a3`` to
every row, and row 1's new state must equal row 0's state of ``a3`` (generation's cached steps
after a left-padded prompt). Padding vectors are random, not zero, so a body that reads padding
cannot pass by luck.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graftlm.plugins.adapter import BackboneAdapter

L = 5  # sentence positions per probe row


class SelfTestError(ValueError):
    """The backbone failed a graft-time probe: grafting it would compute something wrong."""


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-5 if dtype in (torch.float32, torch.float64) else 2e-2


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    a, b = a.float(), b.float()
    scale = float(b.abs().max().clamp_min(1.0))
    return bool(((a - b).abs().max() <= tol * scale).item())


def _inputs(d: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, pad, z = torch.randn(L, d, generator=g), torch.randn(2, d, generator=g), torch.randn(d, generator=g)
    rows = [a, torch.cat([pad, a[:3]]), torch.cat([a[:2], z[None], a[3:]])]
    mask = torch.ones(3, L, dtype=torch.bool)
    mask[1, :2] = False
    positions = (mask.long().cumsum(1) - 1).clamp_min(0)
    return torch.stack(rows).to(device=device, dtype=dtype), mask.to(device), positions.to(device)


def _failure(arch: str, what: str) -> SelfTestError:
    return SelfTestError(
        f"{arch} failed graftlm's graft-time self-test: {what}. The model was not modified. If you know the "
        "architecture is fine, pass graft(..., adapter=YourAdapter()) with an adapter whose forward handles it "
        "and that lists the model type in verified_model_types."
    )


def probe(adapter: BackboneAdapter, body: nn.Module, arch: str) -> None:
    """Raise `SelfTestError` naming ``arch`` and the property it lacks, or return None."""
    param = next(body.parameters())
    x, mask, pos = _inputs(int(adapter.hidden_size(body)), param.dtype, param.device)
    tol = _tolerance(param.dtype)
    modes = [(m, m.training) for m in body.modules()]
    body.eval()
    try:
        with torch.no_grad():
            cache_error: Exception | None = None
            try:
                out, cache = adapter.forward(body, x, mask, pos, adapter.new_cache(body), True)
            except Exception as err:  # noqa: BLE001 - retried without a cache to tell the two failures apart
                cache_error = err
                try:
                    out, cache = adapter.forward(body, x, mask, pos)
                except Exception as plain_err:  # noqa: BLE001 - any failure means the body cannot run vectors
                    raise _failure(arch, f"its body cannot run on sentence vectors ({type(plain_err).__name__}: "
                                         f"{plain_err})") from plain_err
            if tuple(out.shape[:2]) != (3, L):
                raise _failure(arch, f"its body returned shape {tuple(out.shape)} for {tuple(x.shape)} inputs")
            if not bool(torch.isfinite(out[mask]).all()):
                raise _failure(arch, "its body returned NaN/inf states for finite inputs")
            if not _close(out[2, :2], out[0, :2], tol):
                raise _failure(arch, "it is not causal: changing sentence 3 changed the states of sentences 1-2, "
                                     "so a position would see the sentence it is trained to predict")
            if _close(out[2, 2], out[0, 2], tol):
                raise _failure(arch, "its body ignores inputs_embeds: changing a sentence vector did not change "
                                     "its state")
            if not _close(out[1, 2:], out[0, :3], tol):
                raise _failure(arch, "it ignores the padding mask or the position ids: after leading padding the "
                                     "same sentences get different states, so a row batched with longer ones would "
                                     "compute something different than alone")
            if cache_error is not None:
                raise _failure(arch, f"its body cannot keep a cache ({type(cache_error).__name__}: {cache_error}), "
                                     "so generation could not continue a prompt") from cache_error
            _probe_cache(adapter, body, arch, x, mask, pos, out, cache, tol)
    finally:
        for module, training in modes:
            module.training = training


def _probe_cache(adapter: BackboneAdapter, body: nn.Module, arch: str, x: torch.Tensor, mask: torch.Tensor,
                 pos: torch.Tensor, out: torch.Tensor, cache: Any, tol: float) -> None:
    step_x = x[0, 3].expand(x.shape[0], 1, -1)  # a3 appended to every row
    step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    try:
        step, _ = adapter.forward(body, step_x, step_mask, pos[:, -1:] + 1, cache, True)
    except Exception as err:  # noqa: BLE001
        raise _failure(arch, f"its body cannot take one cached step ({type(err).__name__}: {err}), so generation "
                             "could not continue a prompt") from err
    if not _close(step[1, 0], out[0, 3], tol):  # row 1 is now p p a0 a1 a2 a3
        raise _failure(arch, "a cached step gives different states than the full forward, so generated "
                             "sentences would not follow from the prompt")


def vocabulary_embeddings(body: nn.Module, besides: nn.Module | None = None) -> list[str]:
    """Names of embeddings in ``body`` (other than ``besides``) whose rows are a vocabulary (sized by
    a config ``*vocab_size*`` field)."""
    config = getattr(body, "config", None)
    getter = getattr(config, "get_text_config", None)
    config = getter() if callable(getter) else config
    sizes = {v for k, v in vars(config).items() if "vocab_size" in k and isinstance(v, int)} if config else set()
    return [name for name, m in body.named_modules()
            if isinstance(m, nn.Embedding) and m is not besides and m.num_embeddings in sizes]
