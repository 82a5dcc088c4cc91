"""Helper process for the training tests (not collected by pytest).

Trains a tiny bigram model (`ToyLM`) with the real `Trainer` and data pipeline on a text file,
then writes this process's final weights to ``OUT/weights-rank{r}.safetensors`` and a JSON
summary. Run under ``torchrun --nproc_per_node 2`` for two-rank DDP over gloo (``Accelerator()``
inside picks the ranks up from torchrun's environment), or plainly for one process.
``--kill-at-step K`` SIGKILLs the process right after optimizer step K (between steps).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

torch.set_num_threads(1)


@dataclass
class ToyOutput:
    loss: torch.Tensor


class ToyLM(torch.nn.Module):
    """Bigram LM over byte ids: predicts token i from token i-1 (bos=1 before the first).

    Loss = mean over rows of each row's mean token NLL, so a batch split across processes with
    equal row counts averages to the same value as the whole batch (padding does not matter).
    """

    def __init__(self, vocab: int = 259, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.drop = torch.nn.Dropout(dropout)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ToyOutput:
        prev = torch.cat([torch.ones_like(input_ids[:, :1]), input_ids[:, :-1]], dim=1)
        logits = self.head(self.norm(self.drop(self.embed(prev))))
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), input_ids, reduction="none")
        mask = attention_mask.float()
        per_row = (nll * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return ToyOutput(per_row.mean())


def fsdp_on_cpu():
    """An Accelerator that shards with FSDP over gloo. accelerate turns FSDP on only for GPU-like
    devices (on the CPU it silently falls back to DDP), while torch's FSDP itself runs on the CPU; so
    this test helper sets the distributed type by hand. Everything after that (prepare, save_state,
    load_state, get_state_dict) is accelerate's own FSDP code path."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                            state_dict_type="SHARDED_STATE_DICT", cpu_ram_efficient_loading=False)
    accelerator = Accelerator(cpu=True)
    for shared in (PartialState._shared_state, AcceleratorState._shared_state):  # both: they are re-synced
        shared["distributed_type"] = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    assert accelerator.num_processes == 2, "run it under torchrun --nproc_per_node 2"
    return accelerator


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4, help="per process")
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--kill-at-step", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-ema", action="store_true", help="EMA off (FSDP runs: EMA needs unsharded weights)")
    p.add_argument("--fsdp", action="store_true", help="shard with FSDP (under torchrun, gloo on the CPU)")
    args = p.parse_args()

    from safetensors.torch import save_file

    from graftlm.tokenization import ByteTokenizer
    from graftlm.training.batching import ExampleStream, TrainBatches, train_loader
    from graftlm.training.recipes import TrainConfig
    from graftlm.training.trainer import Trainer

    cfg = TrainConfig(name="toy", model="svae", data_path=args.data, batch_size=args.batch,
                      gradient_accumulation_steps=args.accum, lr=3e-2, warmup_steps=2, cosine_steps=10,
                      max_steps=args.steps, save_every=args.save_every, keep_last=2, log_every=1,
                      eval_every=10_000, ema_momentum=None if args.no_ema else 0.1, max_tokens=32, heldout_fraction=0.1,
                      shuffle_buffer=8, bucket_pool=2, num_workers=args.workers, seed=0).validate()
    tok = ByteTokenizer()
    examples = ExampleStream("svae", tok, max_tokens=cfg.max_tokens, max_sentences=cfg.max_sentences)

    def make_batches(start: int, rank: int, world: int):
        ds = TrainBatches(cfg.data_path, examples, batch_size=cfg.batch_size, pad_id=tok.pad_token_id,
                          heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                          bucket_pool=cfg.bucket_pool, rank=rank, world_size=world, start=start)
        return train_loader(ds, num_workers=cfg.num_workers)

    def kill(trainer: Trainer, step: int) -> None:
        if step == args.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(1234)
    model = ToyLM(dropout=args.dropout)
    accelerator = fsdp_on_cpu() if args.fsdp else None
    trainer = Trainer(model, cfg, make_batches, callbacks=[kill], run_dir=args.run_dir, accelerator=accelerator)
    result = trainer.fit(resume=args.resume)
    rank = trainer.accelerator.process_index
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gathered = trainer.accelerator.get_state_dict(trainer.model)  # FSDP: the full weights, on rank 0 only
    weights = {k: v.detach().cpu().contiguous() for k, v in gathered.items()}
    if trainer.ema is not None:
        weights.update({f"ema.{k}": v.cpu().contiguous() for k, v in trainer.ema.state_dict().items()})
    if weights:
        save_file(weights, str(out / f"weights-rank{rank}.safetensors"))
    (out / f"summary-rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world_size": trainer.accelerator.num_processes, "step": result.step,
        "batches_done": trainer.batches_done, "distributed_type": str(trainer.accelerator.distributed_type)}))
    # Every output is written. Leave without the interpreter's shutdown: there, a rank sometimes aborts with
    # "terminate called without an active exception" (a C++ thread still joinable at exit; seen in clean-clone
    # CI runs of the FSDP test, after training and the outputs were complete, with or without end_training()).
    # What this worker checks (checkpoints, resume, weights) is all on disk by now.
    trainer.accelerator.wait_for_everyone()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
