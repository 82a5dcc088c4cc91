"""Learning-rate schedule: linear warm-up from a fraction of the peak, then one cosine decay.

The authors chain mmengine's LinearLR and CosineAnnealingLR, which is periodic: after each cosine
period the lr climbs back to its peak. graftlm decays once over ``cosine_steps`` and then *holds*
the minimum lr; a run longer than warm-up + cosine simply continues at ``min_lr_ratio × lr``.
"""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based), for ``LambdaLR``.

    * ``step < warmup_steps``: linear from ``start_factor`` to 1.
    * then cosine from 1 to ``min_lr_ratio`` over ``cosine_steps``;
    * afterwards constant ``min_lr_ratio``.

    A plain object (not a closure) so ``LambdaLR.state_dict()`` stores its fields.
    """

    def __init__(self, warmup_steps: int, cosine_steps: int, *, start_factor: float = 1e-3,
                 min_lr_ratio: float = 0.0) -> None:
        if warmup_steps < 0 or cosine_steps < 0:
            raise ValueError(f"warmup_steps and cosine_steps must be >= 0, got {warmup_steps}, {cosine_steps}")
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"warmup start_factor must be in (0, 1], got {start_factor}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps = int(warmup_steps)
        self.cosine_steps = int(cosine_steps)
        self.start_factor = float(start_factor)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        t = step - self.warmup_steps
        if self.cosine_steps == 0 or t >= self.cosine_steps:
            return self.min_lr_ratio if self.cosine_steps else 1.0
        cos = 0.5 * (1.0 + math.cos(math.pi * t / self.cosine_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, cosine_steps: int, *,
                    start_factor: float = 1e-3, min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with :class:`WarmupCosine`; step it once per optimizer step."""
    fn = WarmupCosine(warmup_steps, cosine_steps, start_factor=start_factor, min_lr_ratio=min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases, norms and embeddings' 1-D params.

    A parameter is exempt when it is 1-D (biases, LayerNorm/RMSNorm weights) or its name contains
    ``norm``; only trainable (``requires_grad``) parameters are returned.
    """
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters: check the freeze settings of the recipe")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
