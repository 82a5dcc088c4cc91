"""The Trainer loop on a toy model: accumulation, logging, resume bookkeeping, freezing."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import ToyLM  # noqa: E402

from graftlm.tokenization import ByteTokenizer  # noqa: E402
from graftlm.training.batching import ExampleStream, TrainBatches, train_loader  # noqa: E402
from graftlm.training.recipes import TrainConfig  # noqa: E402
from graftlm.training.trainer import Trainer  # noqa: E402

TEXT = [f"Document {i}: some words, more words. The end of it {i}!" for i in range(60)]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _fit(tmp_path, name, **kw):
    cfg = TrainConfig(**{**dict(name=name, batch_size=4, lr=1e-2, warmup_steps=2, cosine_steps=4, max_steps=4,
                                save_every=100, log_every=1, eval_every=100, ema_momentum=0.5, max_tokens=32,
                                heldout_fraction=0.0, shuffle_buffer=8, bucket_pool=2, data_path="unused"), **kw})
    ex = ExampleStream("svae", ByteTokenizer(), max_tokens=32, max_sentences=4)

    def make(start, rank, world):
        return train_loader(TrainBatches(TEXT, ex, batch_size=cfg.batch_size, pad_id=0, shuffle_buffer=8, bucket_pool=2,
                                         rank=rank, world_size=world, start=start))

    torch.manual_seed(0)
    trainer = Trainer(ToyLM(), cfg.validate(), make, run_dir=tmp_path / name, evaluate=lambda m: {"probe": 1.0})
    trainer.fit()
    return trainer


def _fixed_rows(n_rows=32, length=6):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 259, (n_rows, length), generator=g)
    lengths = torch.randint(1, length + 1, (n_rows,), generator=g)
    mask = torch.arange(length)[None] < lengths[:, None]
    return ids * mask, mask


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    # ToyLM's loss is a mean of per-row means, so 2 micro-batches of 2 rows == 1 batch of 4 rows
    ids, mask = _fixed_rows()

    def rows(per_batch):
        def make(start, rank, world):
            for i in range(start * per_batch, len(ids), per_batch):
                yield {"input_ids": ids[i:i + per_batch], "attention_mask": mask[i:i + per_batch]}
        return make

    weights = []
    for name, batch, accum in (("big", 4, 1), ("acc", 2, 2)):
        cfg = TrainConfig(name=name, batch_size=batch, gradient_accumulation_steps=accum, lr=1e-2, warmup_steps=1,
                          cosine_steps=4, max_steps=4, save_every=100, log_every=1, eval_every=100, data_path="x").validate()
        torch.manual_seed(0)
        t = Trainer(ToyLM(), cfg, rows(batch), run_dir=tmp_path / name)
        t.fit()
        weights.append(t.raw_model.state_dict())
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], atol=1e-6, rtol=1e-5, msg=k)


def test_metrics_log_the_lr_used_by_each_step_and_eval_records(tmp_path):
    _fit(tmp_path, "m")
    records = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert lrs[0] == pytest.approx(1e-2 * 1e-3) and lrs[2] == pytest.approx(1e-2)
    assert [r["probe"] for r in records if r["kind"] == "eval"] == [1.0]


def test_evaluation_sees_the_ema_weights_and_training_resumes_with_raw_ones(tmp_path):
    t = _fit(tmp_path, "e")
    raw = {k: v.clone() for k, v in t.raw_model.state_dict().items()}
    with t.ema_weights() as m:
        assert torch.equal(m.head.weight, t.ema.shadow["head.weight"])
        assert not torch.equal(m.head.weight, raw["head.weight"])
    assert all(torch.equal(v, raw[k]) for k, v in t.raw_model.state_dict().items())


def test_frozen_parameters_do_not_change(tmp_path):
    cfg = TrainConfig(name="f", batch_size=4, lr=1e-2, warmup_steps=1, cosine_steps=2, max_steps=2, save_every=100,
                      log_every=1, eval_every=100, max_tokens=32, heldout_fraction=0.0, data_path="x").validate()
    ex = ExampleStream("svae", ByteTokenizer(), max_tokens=32, max_sentences=4)
    model = ToyLM()
    model.embed.requires_grad_(False)
    before = model.embed.weight.detach().clone()
    Trainer(model, cfg, lambda s, r, w: train_loader(TrainBatches(TEXT, ex, batch_size=4, pad_id=0, start=s)),
            run_dir=tmp_path / "f").fit()
    assert torch.equal(model.embed.weight, before)


def test_tensorboard_scalars_are_written_when_asked(tmp_path):
    pytest.importorskip("tensorboard")
    _fit(tmp_path, "tb", tensorboard=True, max_steps=2)
    assert any((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
