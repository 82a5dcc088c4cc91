"""Two-rank FSDP on the CPU (torchrun + gloo): checkpoints through accelerate's save_state /
load_state; a run stopped and resumed ends bit-identical to an uninterrupted one."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "ddp_worker.py"
TEXT = "\n\n".join(f"Document {i}: some words, more words. The end of it {i}!" for i in range(60))


def _launch(tmp_path, name: str, steps: int, *extra: str) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), "--fsdp", "--no-ema", "--data",
           str(tmp_path / "c.txt"), "--run-dir", str(tmp_path / name), "--out", str(tmp_path / f"{name}-out"),
           "--steps", str(steps), "--save-every", "3", "--dropout", "0.1", "--batch", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_fsdp_run_stopped_and_resumed_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "c.txt").write_text(TEXT)
    whole = _launch(tmp_path, "whole", 6)
    assert whole.returncode == 0, whole.stderr[-3000:]
    first = _launch(tmp_path, "split", 3)  # stops after the checkpoint of step 3
    assert first.returncode == 0, first.stderr[-3000:]
    state = tmp_path / "split/checkpoints/step-00000003/accelerate"
    assert (state / "pytorch_model_fsdp_0").is_dir()  # sharded by FSDP, not a DDP checkpoint
    second = _launch(tmp_path, "split", 6, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((tmp_path / "split-out/summary-rank0.json").read_text())
    assert (summary["distributed_type"], summary["step"]) == ("DistributedType.FSDP", 6)
    a = load_file(str(tmp_path / "whole-out/weights-rank0.safetensors"))
    b = load_file(str(tmp_path / "split-out/weights-rank0.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # same batches, same dropout masks (RNG restored per rank), same sharded optimizer state
        assert torch.equal(a[k], b[k]), k
    resumed_from = [json.loads(line) for line in (tmp_path / "split/metrics.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "resumed" for r in resumed_from)
