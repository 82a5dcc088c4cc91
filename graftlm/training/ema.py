"""Exponential moving average of a model's weights (mmengine's convention).

After every optimizer step: ``ema = (1 - m) · ema + m · w`` with momentum ``m`` (mmengine's
default 2e-4, i.e. a half-life of ≈3,500 steps). Buffers (e.g. position tables) are copied, not
averaged. The average is kept in fp32 on the model's device.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, momentum: float = 2e-4) -> None:
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()
        }
        self._params = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average (call after ``optimizer.step()``)."""
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if k in self._params and v.is_floating_point():
                s.mul_(1.0 - self.momentum).add_(v.detach().float(), alpha=self.momentum)
            else:
                s.copy_(v.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
        for k, v in state.items():
            if k in self.shadow:
                self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Write the averaged weights into ``model`` (cast to each tensor's dtype)."""
        own = model.state_dict()
        for k, v in self.shadow.items():
            own[k].copy_(v.to(own[k].dtype))
