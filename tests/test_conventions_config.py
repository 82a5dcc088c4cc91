"""One config system: recipes, demo settings and saved configs are typed pydantic models with the
same "did you mean" for an unknown key."""

from __future__ import annotations

import json

import pytest

from graftlm.demo.inputs import DemoSettings
from graftlm.training.recipes import TrainConfig, load_recipe


def test_recipe_numbers_written_loosely_are_coerced():
    cfg = TrainConfig.from_dict({"max_steps": 3.0, "base_lr": "1e-7"})  # YAML reads 1e-7 as a string
    assert (cfg.max_steps, cfg.base_lr) == (3, 1e-7) and isinstance(cfg.max_steps, int)


@pytest.mark.parametrize("key, value, phrase", [
    ("max_steps", 2.5, "recipe key 'max_steps' must be an integer, got 2.5"),
    ("tensorboard", "yes", "recipe key 'tensorboard' must be true or false, got 'yes'"),
    ("lr", float("inf"), "recipe key 'lr' must be a finite number"),
    ("text_field", 3, "recipe key 'text_field' must be a string, got 3 (int); quote it"),
    ("vae_loss", "mse", "recipe key 'vae_loss' is 'mse'; expected one of 'focal' or 'ce'"),
])
def test_recipe_values_of_the_wrong_type_are_refused_by_name(key, value, phrase):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict({key: value})
    assert phrase in str(err.value)


def test_replace_validates_the_copy():
    with pytest.raises(ValueError, match="recipe key 'batch_size' must be >= 1, got 0"):
        TrainConfig().replace(batch_size=0)


def test_override_errors_say_they_came_from_set():
    with pytest.raises(ValueError, match=r"recipe key 'keep_last' must be >= 0, got -1 \(in --set\)"):
        load_recipe("svae-demo-cpu", ["keep_last=-1"])


def test_demo_settings_from_a_run_folder_refuse_an_unknown_key():
    """A resumed run's state.json with a misspelled setting was silently dropped before."""
    with pytest.raises(ValueError, match="unknown demo setting 'lora_rank'; did you mean 'lora_r'"):
        DemoSettings.from_dict({**DemoSettings().to_dict(), "lora_rank": 8})


def test_demo_settings_name_the_flag():
    with pytest.raises(ValueError, match="--max-tokens must be >= 4, got 2"):
        DemoSettings.from_dict({"max_tokens": 2})


def test_every_config_suggests_the_same_way(tmp_path):
    """The same helper words the unknown-key error of a recipe, a demo setting, a VAE config."""
    from graftlm.vae import SentenceVAEConfig

    messages = []
    for build in (lambda: TrainConfig.from_dict({"max_step": 1}), lambda: DemoSettings.from_dict({"minute": 1}),
                  lambda: SentenceVAEConfig(vocab_size=10, hidden_size=8, num_heads=2, num_layer=1)):
        with pytest.raises(ValueError) as err:
            build()
        messages.append(str(err.value))
    assert all("; did you mean '" in m and m.startswith("unknown ") for m in messages), messages


def test_an_old_checkpoint_layout_is_refused_clearly(tmp_path):
    from graftlm.training import checkpointing as ckpt

    old = tmp_path / "checkpoints" / "step-00000004"
    old.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng-rank0.json"):
        (old / name).write_bytes(b"x")
    (old / "trainer_state.json").write_text(json.dumps({"step": 4, "batches_done": 4}))
    with pytest.raises(ckpt.OldCheckpoint, match="older graftlm .* cannot be resumed .* start a new run"):
        ckpt.read(old)
