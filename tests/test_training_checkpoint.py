"""Checkpoints: atomic layout, keep-last-N, resume after SIGKILL, NaN stops without saving."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import ToyLM, ToyOutput  # noqa: E402

from graftlm.tokenization import ByteTokenizer  # noqa: E402
from graftlm.training import checkpointing as ckpt  # noqa: E402
from graftlm.training.batching import ExampleStream, TrainBatches, train_loader  # noqa: E402
from graftlm.training.recipes import TrainConfig  # noqa: E402
from graftlm.training.trainer import Trainer, TrainingDiverged  # noqa: E402

WORKER = Path(__file__).parent / "ddp_worker.py"
TEXT = "\n\n".join(f"Document {i}: some words, more words. The end of it {i}!" for i in range(60))


def _cfg(tmp_path, **kw):
    base = dict(name="t", data_path=str(tmp_path / "c.txt"), batch_size=4, lr=1e-2, warmup_steps=1, cosine_steps=10,
                max_steps=6, save_every=2, keep_last=2, log_every=1, eval_every=1000, ema_momentum=0.1,
                max_tokens=32, heldout_fraction=0.0, shuffle_buffer=8, bucket_pool=2)
    base.update(kw)
    (tmp_path / "c.txt").write_text(TEXT)
    return TrainConfig(**base).validate()


def _factory(cfg):
    tok = ByteTokenizer()
    ex = ExampleStream("svae", tok, max_tokens=cfg.max_tokens, max_sentences=cfg.max_sentences)
    return lambda start, rank, world: train_loader(TrainBatches(
        cfg.data_path, ex, batch_size=cfg.batch_size, pad_id=0, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
        bucket_pool=cfg.bucket_pool, rank=rank, world_size=world, start=start))


def test_checkpoints_hold_every_state_and_only_the_last_n_are_kept(tmp_path):
    cfg = _cfg(tmp_path)
    torch.manual_seed(0)
    Trainer(ToyLM(), cfg, _factory(cfg), run_dir=tmp_path / "run").fit()
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000004", "step-00000006"]
    files = {p.name for p in (tmp_path / "run/checkpoints/step-00000006").iterdir()}
    assert files == {"accelerate", "model.safetensors", "ema.safetensors", "trainer_state.json"}
    state = {p.name for p in (tmp_path / "run/checkpoints/step-00000006/accelerate").iterdir()}
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= state


def test_incomplete_and_temporary_checkpoints_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-00000002").mkdir(parents=True)
    (root / "step-00000002" / "trainer_state.json").write_text("{}")
    (root / "step-00000004").mkdir()  # no trainer_state.json: interrupted before the rename? never complete
    (root / ".tmp-step-00000006").mkdir()
    assert ckpt.latest_checkpoint(tmp_path) == root / "step-00000002"


def _run_worker(tmp_path, name, *extra):
    cmd = [sys.executable, str(WORKER), "--data", str(tmp_path / "c.txt"), "--run-dir", str(tmp_path / name),
           "--out", str(tmp_path / f"out-{name}"), "--steps", "8", "--save-every", "3", "--dropout", "0.1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path):
    (tmp_path / "c.txt").write_text(TEXT)
    assert _run_worker(tmp_path, "a").returncode == 0
    killed = _run_worker(tmp_path, "b", "--kill-at-step", "5")
    assert killed.returncode == -signal.SIGKILL
    assert ckpt.latest_checkpoint(tmp_path / "b").name == "step-00000003"
    resumed = _run_worker(tmp_path, "b", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(tmp_path / "out-a/weights-rank0.safetensors"))
    b = load_file(str(tmp_path / "out-b/weights-rank0.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # bit-identical on the CPU: same batches, same dropout masks, same optimizer state
        assert torch.equal(a[k], b[k]), k


class NaNAt(ToyLM):
    def __init__(self, bad_call: int):
        super().__init__()
        self.calls, self.bad_call = 0, bad_call

    def forward(self, input_ids, attention_mask):
        self.calls += 1
        out = super().forward(input_ids, attention_mask)
        return ToyOutput(out.loss * float("nan")) if self.calls == self.bad_call else out


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = _cfg(tmp_path)
    torch.manual_seed(0)
    trainer = Trainer(NaNAt(bad_call=5), cfg, _factory(cfg), run_dir=tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"loss is not finite .* step 5.*step-00000004"):
        trainer.fit()
    last = ckpt.latest_checkpoint(tmp_path / "run")
    assert last.name == "step-00000004"
    weights = load_file(str(last / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
