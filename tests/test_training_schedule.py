"""Learning-rate schedule, AdamW parameter groups and EMA."""

import math

import pytest
import torch

from graftlm.training.ema import EMA
from graftlm.training.schedule import WarmupCosine, build_scheduler, param_groups


def test_warmup_starts_at_a_thousandth_and_reaches_peak():
    f = WarmupCosine(10, 20)
    assert f(0) == pytest.approx(1e-3)
    assert f(5) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert f(10) == pytest.approx(1.0)


def test_cosine_reaches_min_and_then_holds_instead_of_restarting():
    f = WarmupCosine(10, 20, min_lr_ratio=0.1)
    assert f(20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(30) == pytest.approx(0.1)
    assert f(75) == pytest.approx(0.1)  # mmengine's chained schedule would be back near the peak


def test_scheduler_state_round_trips_with_weights_only(tmp_path):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_scheduler(opt, 4, 8)
    for _ in range(5):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    opt2 = torch.optim.AdamW([p], lr=1.0)
    sched2 = build_scheduler(opt2, 4, 8)
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_param_groups_exempt_biases_and_norms_from_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    groups = param_groups(model, 0.01)
    decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(model[0].weight), id(model[2].weight)}


def test_param_groups_reject_a_fully_frozen_model():
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.01)


def test_ema_update_follows_mmengine_convention():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, momentum=0.25)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.75 * 1.0 + 0.25 * 3.0))


def test_ema_copy_to_writes_the_average():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, momentum=0.5)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    ema.copy_to(model)
    assert torch.allclose(model.weight, before + 1.0)


def test_ema_rejects_bad_momentum():
    with pytest.raises(ValueError, match="ema_momentum"):
        EMA(torch.nn.Linear(1, 1), momentum=0.0)
