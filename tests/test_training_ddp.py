"""Two-process data parallel training on the CPU (torchrun + gloo) against one process."""

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


@pytest.mark.slow
def test_two_ranks_stay_in_step_and_match_one_process_with_the_same_global_batch(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    (tmp_path / "c.txt").write_text(TEXT)
    common = ["--data", str(tmp_path / "c.txt"), "--steps", "5"]
    ddp = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(WORKER), *common,
                          "--run-dir", str(tmp_path / "ddp"), "--out", str(tmp_path / "ddp-out"), "--batch", "2"],
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, str(WORKER), *common, "--run-dir", str(tmp_path / "one"),
                             "--out", str(tmp_path / "one-out"), "--batch", "4"], capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    summaries = [json.loads((tmp_path / f"ddp-out/summary-rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in summaries] == [2, 2]
    assert [s["step"] for s in summaries] == [5, 5] and summaries[0]["batches_done"] == summaries[1]["batches_done"]
    r0 = load_file(str(tmp_path / "ddp-out/weights-rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ddp-out/weights-rank1.safetensors"))
    one = load_file(str(tmp_path / "one-out/weights-rank0.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=1e-5)
