"""The SentenceVAE follows transformers' conventions: PretrainedConfig + AutoConfig, ModelOutput,
hub ids and push_to_hub, a model card, atomic saves, and training with transformers.Trainer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import graftlm.vae.checkpoint as vae_checkpoint
from graftlm.vae import SentenceVAE, SentenceVAEConfig

V, H = 40, 16


def _vae(seed: int = 0) -> SentenceVAE:
    torch.manual_seed(seed)
    return SentenceVAE(SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=2, num_layers=1, init_std=0.2)).eval()


def _batch(rng):
    ids = torch.randint(3, V, (3, 5), generator=rng)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0]], dtype=torch.bool)
    return ids, mask


def test_config_is_a_pretrained_config_loaded_by_autoconfig(tmp_path):
    from transformers import AutoConfig, PretrainedConfig

    config = SentenceVAEConfig.official(vocab_size=V, hidden_size=H, num_heads=2, fusion="weighted")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PretrainedConfig) and isinstance(loaded, SentenceVAEConfig)
    assert loaded == config and loaded.fusion == "weighted"


def test_config_json_without_transformers_keys_still_loads(tmp_path):
    """config.json files written before the config became a PretrainedConfig hold only our fields."""
    config = SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=2)
    (tmp_path / "config.json").write_text(json.dumps(config.fields_dict()))
    assert SentenceVAEConfig.from_json_file(tmp_path / "config.json") == config


def test_config_refuses_an_unknown_key_through_from_pretrained(tmp_path):
    config = SentenceVAEConfig(vocab_size=V, hidden_size=H, num_heads=2).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layer": 3}))
    with pytest.raises(ValueError, match="unknown SentenceVAEConfig key 'num_layer'; did you mean 'num_layers'"):
        SentenceVAEConfig.from_pretrained(tmp_path)


def test_outputs_index_like_transformers_outputs(rng):
    out = _vae()(*_batch(rng))
    assert out["loss"] is out.loss and out[0] is out.loss
    assert out.to_tuple()[-1] is out.sentence_vectors
    assert out.logits.shape == (3, 6, V)  # the lazy full logits are still there


def test_interrupted_save_keeps_the_earlier_model(tmp_path, rng, monkeypatch):
    first, second = _vae(0), _vae(1)
    first.save_pretrained(tmp_path / "m")
    ids, mask = _batch(rng)
    expected = first(ids, mask).token_logprobs

    real = vae_checkpoint.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # a disk that filled up halfway through the weights
            f.truncate(f.seek(0, 2) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vae_checkpoint, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        second.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folder left behind
    reloaded = SentenceVAE.from_pretrained(tmp_path / "m")
    assert torch.equal(reloaded(ids, mask).token_logprobs, expected)


def test_save_keeps_files_it_does_not_own(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    _vae().save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_model_card_states_config_data_and_evaluation(tmp_path):
    _vae().save_pretrained(tmp_path, model_card={"data": "pydoc topics", "evaluation": {"exact_match": 0.8125}})
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: graftlm" in card
    assert "| hidden_size | 16 |" in card and "pydoc topics" in card and "| exact_match | 0.8125 |" in card


def _lay_out_hub_cache(cache, repo_id: str, folder) -> None:
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def test_from_pretrained_takes_a_hub_id_from_the_local_cache(tmp_path, rng, monkeypatch):
    model = _vae()
    model.save_pretrained(tmp_path / "saved")
    _lay_out_hub_cache(tmp_path / "cache", "someone/tiny-svae", tmp_path / "saved")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    loaded = SentenceVAE.from_pretrained("someone/tiny-svae")
    ids, mask = _batch(rng)
    assert torch.equal(loaded(ids, mask).token_logprobs, model(ids, mask).token_logprobs)


def test_a_hub_id_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="'someone/absent'.*could not be fetched.*offline"):
        SentenceVAE.from_pretrained("someone/absent")


def test_push_to_hub_uploads_a_complete_save(monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["repo"] = repo_id
        return type("Repo", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, **kw):
        from pathlib import Path

        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["weights"] = load_file(str(Path(folder_path) / "model.safetensors"))
        return "commit-url"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = _vae()
    assert model.push_to_hub("someone/tiny-svae") == "commit-url"
    assert calls["repo"] == "someone/tiny-svae"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(calls["weights"]["encoder.fusion_norm.weight"], model.encoder.fusion_norm.weight)


def test_transformers_trainer_trains_a_sentence_vae(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = _vae().train()
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, V, (6,), generator=g), "attention_mask": torch.ones(6, dtype=torch.long)}
            for _ in range(12)]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                             report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    result = trainer.train()
    assert trainer.state.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before["encoder.fusion_norm.weight"], model.encoder.fusion_norm.weight)


def test_logits_survive_accelerates_mixed_precision_rebuild_of_the_output(rng):
    """accelerate re-creates a mixed-precision output from its keys; the lazy logits must still work."""
    from accelerate.utils import convert_to_fp32

    model = _vae()
    ids, mask = _batch(rng)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask)
    rebuilt = convert_to_fp32(out)
    assert rebuilt is not out
    assert torch.equal(rebuilt.logits, model.decoder.lm_head(rebuilt.hidden))
