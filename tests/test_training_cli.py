"""`graftlm train / eval / plot` end to end on a smoke run, and the CLI's error paths."""

import json

import pytest
import torch

from graftlm.cli import main


@pytest.fixture(autouse=True)
def _one_thread_fresh_accelerator(fresh_accelerate_state):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "svae-768-h1", "--smoke", "--set", f"output_dir={out}/{{name}}", "--set", "max_steps=4",
                 "--set", "save_every=2", "--set", "eval_every=2"]) == 0
    return out / "svae-768-h1"


def test_train_writes_metrics_checkpoints_eval_and_final_model(smoke_run):
    records = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert all({"loss", "lr", "tokens_per_s"} <= r.keys() for r in records if r["kind"] == "train")
    assert any(r["kind"] == "eval" for r in records)
    assert (smoke_run / "eval.json").is_file() and (smoke_run / "final").is_dir()
    assert (smoke_run / "checkpoints" / "step-00000004").is_dir()


def test_the_final_model_card_carries_data_and_held_out_figures(smoke_run):
    card = (smoke_run / "final" / "README.md").read_text()
    ppl = json.loads((smoke_run / "eval.json").read_text())["ppl"]
    assert "packaged:pydoc" in card and f"| ppl | {ppl:.4g} |" in card


def test_plot_writes_a_png(smoke_run, capsys):
    assert main(["plot", str(smoke_run)]) == 0
    png = smoke_run / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reloads_the_run_and_prints_a_reconstruction_table(smoke_run, capsys):
    assert main(["eval", str(smoke_run), "--set", "eval_size=6", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "exact match" in out and "| input segment | reconstruction | exact |" in out
    result = json.loads((smoke_run / "eval.json").read_text())
    assert result["segments"] == 6 and result["weights"] == "ema"


def test_eval_json_of_an_sllm_run_has_the_same_bytes_report(tmp_path, capsys):
    from accelerate.state import AcceleratorState

    assert main(["train", "sllm-125m-h1", "--smoke", "--set", f"output_dir={tmp_path}/{{name}}", "--set", "max_steps=2",
                 "--set", "save_every=2", "--set", "eval_size=4"]) == 0
    capsys.readouterr()
    AcceleratorState._reset_state(True)
    run = tmp_path / "sllm-125m-h1"
    assert main(["eval", str(run), "--json", "--generate", "--texts", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"bytes", "sllm_bits_per_byte", "backbone_bits_per_byte", "sllm_ppl", "backbone_ppl",
            "termination_accuracy"} <= set(result)
    assert {"judge_ppl", "unigram_entropy", "distinct_2"} <= set(result["generation"]["greedy"]["sllm"])
    # the VAE's reconstruction after the SLLM phase, on the SVAE recipes' held-out segments
    assert result["svae"]["segments"] > 0 and 0.0 <= result["svae"]["exact_match"] <= 1.0
    assert main(["eval", str(run), "--texts", "3"]) == 0
    assert "bits per byte (same bytes)" in capsys.readouterr().out


def test_eval_out_keeps_the_runs_own_evaluation(smoke_run, tmp_path, capsys):
    before = (smoke_run / "eval.json").read_bytes()
    assert main(["eval", str(smoke_run), "--out", str(tmp_path / "kjv"), "--set", "data_path=packaged:kjv",
                 "--set", "eval_size=4"]) == 0
    assert (smoke_run / "eval.json").read_bytes() == before
    assert json.loads((tmp_path / "kjv" / "eval.json").read_text())["segments"] == 4
    (tmp_path / "file").write_text("x")
    assert main(["eval", str(smoke_run), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_eval_of_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_of_a_finished_run_keeps_its_step(smoke_run, capsys):
    assert main(["train", str(smoke_run / "recipe.yaml"), "--resume", "--set", "max_steps=4"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 4


def test_missing_data_path_exits_2_with_a_message(tmp_path, capsys):
    code = main(["train", "svae-768-h1", "--set", f"data_path={tmp_path}/none.jsonl", "--set", f"output_dir={tmp_path}/r"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_misspelled_set_key_exits_2_naming_close_matches(capsys):
    assert main(["train", "svae-768-h1", "--smoke", "--set", "max_step=3"]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err


def test_plot_of_a_folder_without_metrics_is_an_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
