"""scripts/gpu-check.sh: bad options are refused at once; --dry-run runs every step on the CPU
with tiny sizes, every step within the time limit the script gives it (a step past it is recorded
as "timeout", not "ok"), and leaves the record (<= 8 flat files) in --out only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # the GPU-report tooling lives there, outside the package

from gpu_report import RECORD_FILES  # noqa: E402
SCRIPT = REPO / "scripts" / "gpu-check.sh"


def _run(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--limit", "bench=soon"], "--limit expects STEP=SECONDS"),
    (["--limit", "nap=10"], "--limit expects STEP=SECONDS"),
    (["--train-steps", "0"], "--train-steps must be a positive integer, got '0'"),
    (["--wheels", "/no/such/wheels"], "--wheels folder '/no/such/wheels' does not exist"),
])
def test_bad_options_are_refused_before_anything_runs(args, message, tmp_path):
    res = _run(*args, "--work", str(tmp_path / "work"))
    assert res.returncode == 2
    assert message in res.stderr
    assert not (tmp_path / "work").exists()


def test_help_lists_the_options():
    res = _run("--help")
    assert res.returncode == 0
    for opt in ("--dry-run", "--out DIR", "--recipe", "--limit STEP=S", "--fetch-wheels"):
        assert opt in res.stdout


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_only_the_record(tmp_path):
    docs = REPO / "docs" / "bench" / "cuda"
    before = sorted((p.name, p.stat().st_mtime) for p in docs.iterdir()) if docs.is_dir() else []
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = _run("--dry-run", "--out", str(out), "--work", str(work), timeout=240, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    # the record: flat, at most 8 files, names a device machine can copy back
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(RECORD_FILES)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) and (out / f).stat().st_size < 16 * 2**20 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dry-run"
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [
        ("setup", "ok"), ("tests", "ok"), ("bench", "ok"), ("train", "ok"), ("eval", "ok")]
    assert summary["training"]["steps"] == 4 and "loss" in summary["eval"]
    bench = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in bench["throughput"]} == {"lean_loop", "hf_generate", "sllm-H1", "sllm-H2", "sllm-H4"}
    assert {r["batch"] for r in bench["throughput"]} == {1, 2}
    assert bench["kv"] and bench["memory"] and bench["attention"]
    assert bench["settings"]["dtype"] == "bfloat16"
    for step in ("[setup] ok", "[tests] ok", "[bench] ok", "[train] ok", "[eval] ok", "[report] ok"):
        assert step in res.stdout
    assert "Mode: dry-run" in res.stdout  # the summary is printed too
    after = sorted((p.name, p.stat().st_mtime) for p in docs.iterdir()) if docs.is_dir() else []
    assert after == before, "the dry run wrote into docs/bench/cuda"


@pytest.mark.parametrize("driver_cuda, tag", [("12.5", "cu124")])  # the newest tag the driver runs
def test_gpu_without_a_cuda_torch_picks_the_wheel_tag_and_fails_clearly(tmp_path, driver_cuda, tag):
    """A visible GPU (a stand-in nvidia-smi) but no torch that sees it, installs forbidden."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\nif [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA H200 (UUID: GPU-x)"; exit 0; fi\n'
                   f'echo "| NVIDIA-SMI 580.1  Driver Version: 580.1  CUDA Version: {driver_cuda} |"\n')
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    res = _run("--no-install", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), env=env, timeout=120)
    assert res.returncode == 1
    assert f"driver CUDA {driver_cuda} -> PyTorch wheel tag {tag}" in res.stdout
    assert "no CUDA torch could be set up" in res.stderr
    assert not (REPO / ".venv-cuda").exists()
