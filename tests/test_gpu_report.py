"""The record scripts/gpu-check.sh leaves: summary from synthetic step records (no GPU, no bench run)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # the GPU-report tooling
import gpu_env  # noqa: E402
import gpu_report  # noqa: E402


def _work(tmp_path, mode="gpu", steps=None):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (work / "run.json").write_text(json.dumps({"mode": mode, "recipe": "svae-demo-cpu", "started": time.time() - 5}))
    steps = steps or [{"name": "setup", "status": "ok", "rc": 0, "seconds": 2.0, "limit": None},
                      {"name": "tests", "status": "ok", "rc": 0, "seconds": 9.5, "limit": 60},
                      {"name": "bench", "status": "timeout", "rc": 124, "seconds": 200.0, "limit": 200}]
    (work / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (work / "env.json").write_text(json.dumps({"machine_line": "GPU: NVIDIA H200 · driver 580 · torch 2.11.0"}))
    (work / "tests.log").write_text("....s\nSKIPPED [1] tests/x.py:3: needs xformers\n"
                                    "========= 4 passed, 1 skipped in 1.23s =========\n")
    (work / "notes.txt").write_text("SmolLM2-135M not measured: no wheel\n")
    rows = [dict(backbone="opt-125m", batch=1, method=m, new_tokens=64, tokens_per_s=tps, seconds=[1.0], spread=0.0,
                 **({"speedup": sp} if sp else {})) for m, tps, sp in
            (("lean_loop", 100.0, None), ("hf_generate", 90.0, 0.9), ("sllm-H1", 300.0, 3.0))]
    (out / "results.json").write_text(json.dumps({"machine": {}, "throughput": rows, "notes": ["bench note"]}))
    return work, out


def test_record_is_flat_and_has_at_most_eight_files(tmp_path):
    work, out = _work(tmp_path)
    gpu_report.write_record(work, out)
    names = {p.name for p in out.iterdir()}
    assert names <= set(gpu_report.RECORD_FILES) and len(gpu_report.RECORD_FILES) <= 8
    assert {"summary.md", "summary.json", "results.md", "throughput.png", "log.txt"} <= names
    assert all(p.is_file() for p in out.iterdir())


def test_summary_shows_steps_tests_speedups_and_notes(tmp_path):
    work, out = _work(tmp_path)
    summary = gpu_report.write_record(work, out)
    md = (out / "summary.md").read_text()
    assert "GPU: NVIDIA H200" in md and "budget 480 s" in md
    assert "| bench | timeout | 200 | 200 |" in md
    assert "4 passed, 1 skipped in 1.23s" in md and "needs xformers" in md
    assert "| opt-125m | 1 | 64 | 100 | 90 | 300 (×3) |" in md
    assert "SmolLM2-135M not measured" in md and "bench note" in md
    assert "Nothing here was measured on a GPU" not in md
    assert summary["steps"][2]["status"] == "timeout"


def test_a_dry_run_record_says_its_figures_mean_nothing(tmp_path):
    work, out = _work(tmp_path, mode="dry-run")
    gpu_report.write_record(work, out)
    assert "Nothing here was measured on a GPU" in (out / "summary.md").read_text()


def test_last_record_of_a_step_wins_and_order_is_the_scripts(tmp_path):
    work, _ = _work(tmp_path, steps=[{"name": "train", "status": "failed", "rc": 1, "seconds": 1, "limit": 9},
                                     {"name": "tests", "status": "ok", "rc": 0, "seconds": 1, "limit": 9},
                                     {"name": "train", "status": "ok", "rc": 0, "seconds": 2, "limit": 9}])
    assert [(s["name"], s["status"]) for s in gpu_report.read_steps(work)] == [("tests", "ok"), ("train", "ok")]


def test_long_logs_are_cut_to_their_end(tmp_path, monkeypatch):
    work, out = _work(tmp_path)
    monkeypatch.setattr(gpu_report, "LOG_LIMIT", 100)
    (work / "bench.log").write_text("x" * 500 + "THE END")
    gpu_report.write_log(work, out)
    text = (out / "log.txt").read_text()
    assert "characters cut" in text and "THE END" in text and len(text) < 400


def test_main_refuses_a_folder_that_is_not_a_scratch_folder(tmp_path, capsys):
    assert gpu_report.main(["--work", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "steps.jsonl does not exist" in capsys.readouterr().err


def test_machine_line_names_gpu_driver_cuda_and_torch():
    line = gpu_env.machine_line({"gpu": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.159.03",
                                 "driver_cuda": "13.0", "torch_cuda": "13.0", "torch": "2.11.0+cu130",
                                 "cuda_available": True, "modules": {"xformers": "0.0.35"}})
    for part in ("NVIDIA H200", "driver 580.159.03", "CUDA 13.0 (driver) / 13.0 (torch build)",
                 "torch 2.11.0+cu130", "xformers 0.0.35"):
        assert part in line
    assert "no GPU visible" in gpu_env.machine_line({"modules": {}})


def test_env_probe_reports_missing_modules_with_pip_names(monkeypatch):
    monkeypatch.setattr(gpu_env, "NEEDED", {"yaml": "recipes", "no_such_module_xyz": "nothing"})
    monkeypatch.setattr(gpu_env, "OPTIONAL", {})
    info = gpu_env.modules()
    assert "yaml" in info["modules"] and "no_such_module_xyz" in info["missing"]
    assert info["missing_pip"] == ["no_such_module_xyz"]


@pytest.mark.parametrize("text, expected", [("== 3 passed in 0.5s ==", ["3 passed in 0.5s"]),
                                            ("collected 0 items\n== no tests ran in 0.1s ==", ["no tests ran in 0.1s"])])
def test_pytest_closing_lines_are_found(text, expected):
    assert gpu_report.pytest_summaries(text) == expected
