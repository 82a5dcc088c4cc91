"""The training loop: one code path for the SentenceVAE and a grafted SentenceLLM.

The model is any ``nn.Module`` whose ``forward(**batch)`` returns an object with ``.loss`` (a
scalar mean over the micro-batch's target tokens) and optionally ``.decoder_loss`` /
``.termination_loss`` (logged). Distribution, mixed precision and gradient accumulation come from
``accelerate`` (DDP, FSDP, DeepSpeed: whatever the accelerate config / launcher says); checkpoints
go through accelerate's ``save_state`` / ``load_state`` (`graftlm.training.checkpointing`), so every
one of them checkpoints and resumes (tested: DDP and FSDP on CPU).

Per optimizer step: ``gradient_accumulation_steps`` micro-batches, grad-norm clip, AdamW step,
lr schedule step (`graftlm.training.schedule`), EMA update (`graftlm.training.ema`).
A non-finite loss (or, without fp16 loss scaling, a non-finite gradient norm) stops the run
with `TrainingDiverged` *before* the optimizer step, so no checkpoint with NaN weights is written
and the last good checkpoint stays.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm

from graftlm.atomic import write_text
from graftlm.training import checkpointing as ckpt
from graftlm.training.ema import EMA
from graftlm.training.metrics import MetricsWriter
from graftlm.training.recipes import TrainConfig
from graftlm.training.schedule import build_scheduler, param_groups

BatchFactory = Callable[[int, int, int], Iterable[dict[str, torch.Tensor]]]
"""``make_batches(start, rank, world_size)`` → this process's batches from global index ``start``."""


# Recipe keys a resumed run must share with its checkpoint: the data position (batches_done) and the
# weights only mean the same thing under the same data pipeline, batch and model. The schedule,
# max_steps, logging and saving may change.
RESUME_KEYS = (
    "model", "batch_size", "gradient_accumulation_steps", "seed", "data_path", "data_format", "text_field",
    "encoding", "heldout_fraction", "max_tokens", "max_sentences", "shuffle_buffer", "bucket_pool", "tokenizer",
    "backbone", "hidden_size", "num_heads", "num_layers", "vae_preset", "vae_path", "freeze", "train_layers",
)


def recipe_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``key: now X, checkpoint Y`` for every `RESUME_KEYS` key that differs (absent in an older
    checkpoint = the default)."""
    current = cfg.to_dict()
    defaults = TrainConfig().to_dict()
    out = []
    for key in RESUME_KEYS:
        old = saved.get(key, defaults.get(key))
        if key in current and old != current[key]:
            out.append(f"{key}: now {current[key]!r}, checkpoint {old!r}")
    if (saved.get("ema_momentum") is None) != (cfg.ema_momentum is None) and "ema_momentum" in saved:
        out.append(f"ema_momentum: now {cfg.ema_momentum!r}, checkpoint {saved['ema_momentum']!r} (EMA on/off)")
    return out


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the run stopped without saving."""


@dataclass
class TrainResult:
    step: int
    run_dir: Path
    last_loss: float
    checkpoint: Path | None
    eval: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Args:
        model: the module to train (parameters with ``requires_grad=False`` stay frozen).
        cfg: the recipe (`TrainConfig`).
        make_batches: see `BatchFactory`; batches are dicts of CPU tensors.
        evaluate: ``evaluate(model) -> {name: number}``, run on the main process with the EMA
            weights in the model (or the raw ones without EMA), in ``eval()`` mode.
        export: ``export(model, folder)`` writes the final (EMA) model, e.g. ``save_pretrained``.
        callbacks: ``fn(trainer, step)`` called after every optimizer step (and its checkpoint).
        accelerator: reuse an ``Accelerator``; by default one is built from the recipe.
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, make_batches: BatchFactory, *,
                 evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
                 export: Callable[[torch.nn.Module, Path], None] | None = None,
                 callbacks: Iterable[Callable[["Trainer", int], None]] = (), accelerator: Any = None,
                 run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir()
        self.accelerator = accelerator or Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=cfg.mixed_precision,
            cpu=_cpu_only())
        self.make_batches = make_batches
        self.evaluate_fn, self.export_fn = evaluate, export
        self.callbacks = list(callbacks)
        acc = self.accelerator
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.peak_lr())
        self.scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.cosine_steps,
                                         start_factor=cfg.warmup_start_factor, min_lr_ratio=cfg.min_lr_ratio)
        # The scheduler is not prepared: accelerate would step it once per process.
        self.model, self.optimizer = acc.prepare(model, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        self.raw_model = acc.unwrap_model(self.model)
        if cfg.ema_momentum and self._sharded():
            raise ValueError("EMA averages full weights, which FSDP / DeepSpeed split across processes: set "
                             "ema_momentum: null for a sharded run")
        self.ema = EMA(self.raw_model, cfg.ema_momentum) if cfg.ema_momentum else None
        self.step = 0
        self.batches_done = 0  # global batches consumed: the data position
        self.tokens_seen = 0
        self.train_seconds = 0.0  # time in training steps (no eval, no checkpoints), across resumes
        self.last_checkpoint: Path | None = None
        self.metrics = MetricsWriter(self.run_dir, enabled=acc.is_main_process, tensorboard=cfg.tensorboard)

    # -- checkpoints ------------------------------------------------------------------------------

    def _sharded(self) -> bool:
        """FSDP / DeepSpeed: parameters are split across processes; weights must be gathered."""
        return self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    def save(self) -> Path:
        """Write a checkpoint of the current step (all processes must call it): accelerate's
        ``save_state`` inside the atomic temp folder, then the gathered weights, EMA and trainer state."""
        acc = self.accelerator
        for name, p in self.raw_model.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"parameter {name} is not finite at step {self.step}; not saving "
                                       f"(last good checkpoint: {self.last_checkpoint})")
        acc.wait_for_everyone()
        tmp = ckpt.temp_dir_for(self.run_dir, self.step)
        if acc.is_main_process:
            ckpt.begin(self.run_dir, self.step)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / ckpt.STATE_DIR))
        weights = acc.get_state_dict(self.model) if self._sharded() else None  # every process takes part
        acc.wait_for_everyone()
        final = ckpt.step_dir(self.run_dir, self.step)
        if acc.is_main_process:
            ckpt.finish(self.run_dir, tmp, self.step, weights=weights,
                        ema_state=self.ema.state_dict() if self.ema else None,
                        trainer_state={"step": self.step, "batches_done": self.batches_done,
                                       "tokens_seen": self.tokens_seen, "world_size": acc.num_processes,
                                       "train_seconds": self.train_seconds,
                                       "config": self.cfg.to_dict()},
                        keep_last=self.cfg.keep_last)
        acc.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def resume(self) -> bool:
        """Load the newest complete, undamaged checkpoint of ``run_dir``; False if there is none.

        A damaged checkpoint (truncated/corrupt file) is renamed ``damaged-step-…`` with a warning
        and the previous one is used. A recipe that differs from the checkpoint's in a `RESUME_KEYS`
        key, weights that do not fit the model, or a checkpoint in the layout before accelerate's
        raise ValueError naming them (nothing is loaded).
        """
        acc = self.accelerator
        found = ckpt.list_checkpoints(self.run_dir)
        state, path, damaged = None, None, []
        for candidate in reversed(found):
            try:
                state = ckpt.read(candidate)
            except ckpt.DamagedCheckpoint as err:
                damaged.append(candidate)
                warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
                continue
            path = candidate
            break
        acc.wait_for_everyone()
        if acc.is_main_process:
            for bad in damaged:
                ckpt.set_aside(bad)
        if state is None:
            if damaged:
                raise ValueError(f"every checkpoint of {self.run_dir} is damaged ({', '.join(p.name for p in damaged)}, "
                                 "renamed damaged-…): nothing to resume; start a new run without --resume")
            return False
        saved = state.get("config") or {}
        diff = recipe_differences(saved, self.cfg)
        if diff:
            raise ValueError(
                f"--resume: the recipe differs from the one {path} was trained with: {'; '.join(diff)}. Resuming "
                "would misalign the data position or the model; restore those values or start a new run "
                "(another name or output_dir)")
        if state.get("world_size", 1) != acc.num_processes:
            raise ValueError(f"{path} was written by {state['world_size']} processes, this run has "
                             f"{acc.num_processes}: the data position would not line up")
        if self.ema is not None and state["ema"] is None:
            raise ValueError(f"{path} has no EMA weights but the recipe enables EMA")
        if not self._sharded():  # sharded parameters are checked by accelerate's own loader
            try:
                ckpt.check_fits(self.raw_model, state["model"], str(path / ckpt.WEIGHTS))
            except ValueError as err:
                raise ValueError(f"--resume: {err}; the recipe builds a different model than the checkpoint's") from err
        acc.load_state(str(path / ckpt.STATE_DIR))  # model, optimizer, scheduler, this process's RNG
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.batches_done = int(state["step"]), int(state["batches_done"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.last_checkpoint = path
        self.metrics.truncate_after(self.step)
        self.metrics.log("event", self.step, {"event": "resumed", "checkpoint": str(path)})
        return True

    # -- evaluation -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def ema_weights(self):
        """Temporarily put the EMA weights into the model (no-op without EMA)."""
        if self.ema is None:
            yield self.raw_model
            return
        backup = {k: v.detach().clone() for k, v in self.raw_model.state_dict().items()}
        self.ema.copy_to(self.raw_model)
        try:
            yield self.raw_model
        finally:
            self.raw_model.load_state_dict(backup)

    def run_eval(self) -> dict[str, float]:
        acc = self.accelerator
        result: dict[str, float] = {}
        if self.evaluate_fn is not None and acc.is_main_process:
            was_training = self.raw_model.training
            with self.ema_weights() as m, torch.no_grad():
                m.eval()
                result = dict(self.evaluate_fn(m))
            self.raw_model.train(was_training)
            self.metrics.log("eval", self.step, {**result, "train_minutes": round(self.train_seconds / 60, 3)})
        acc.wait_for_everyone()
        return result

    # -- the loop ---------------------------------------------------------------------------------

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        flags = self.accelerator.gather(torch.isfinite(value.detach().float()).all().reshape(1))
        if not bool(flags.all()):
            msg = (f"{what} is not finite (value {value.item()}) at step {self.step + 1}, global batch "
                   f"{self.batches_done}: training stopped before the optimizer step, nothing was saved; "
                   f"the last good checkpoint is {self.last_checkpoint or 'none (no checkpoint yet)'}. "
                   "Lower lr, raise warmup_steps, try bf16 instead of fp16, or inspect that batch.")
            self.metrics.log("event", self.step, {"event": "diverged", "message": msg})
            raise TrainingDiverged(msg)

    def fit(self, resume: bool = False) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator

        if resume and not self.resume():
            raise ValueError(f"--resume: {self.run_dir} has no checkpoint to resume from (no complete "
                             f"{ckpt.checkpoint_dir(self.run_dir)}/step-*); drop --resume to start a new run")
        if not resume:
            set_seed(cfg.seed, device_specific=True)
        if acc.is_main_process:  # after the resume checks: a refused recipe must not replace the run's
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / "recipe.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        batches = iter(self.make_batches(self.batches_done, acc.process_index, acc.num_processes))
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not acc.is_main_process,
                   desc=cfg.name, dynamic_ncols=True)
        window: dict[str, float] = {}
        n_window, tokens_window, t0 = 0, 0, time.perf_counter()
        last_loss = math.nan
        while self.step < cfg.max_steps:
            step_start = time.perf_counter()
            grad_norm = None
            for _ in range(cfg.gradient_accumulation_steps):
                batch = {k: v.to(acc.device) for k, v in next(batches).items()}
                tokens_window += int(_mask(batch).sum())
                with acc.accumulate(self.model):
                    out = self.model(**batch)
                    self._check_finite(out.loss, "the loss")
                    acc.backward(out.loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                        if cfg.mixed_precision != "fp16":  # fp16: the grad scaler skips inf steps itself
                            self._check_finite(torch.as_tensor(grad_norm), "the gradient norm")
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.batches_done += 1
                for name in ("loss", "decoder_loss", "termination_loss"):
                    v = getattr(out, name, None)
                    if v is not None:
                        window[name] = window.get(name, 0.0) + float(v.detach()) / cfg.gradient_accumulation_steps
            lr_used = self.scheduler.get_last_lr()[0]
            if not acc.optimizer_step_was_skipped:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.raw_model)
            self.step += 1
            n_window += 1
            if grad_norm is not None:
                window["grad_norm"] = window.get("grad_norm", 0.0) + float(grad_norm)
            if self.step % cfg.log_every == 0 or self.step % cfg.save_every == 0 or self.step == cfg.max_steps:
                window["lr"] = lr_used * n_window  # _log divides by n_window
                last_loss = self._log(window, n_window, tokens_window, time.perf_counter() - t0, bar)
                window, n_window, tokens_window, t0 = {}, 0, 0, time.perf_counter()
            bar.update(1)
            paused = time.perf_counter()  # eval and checkpoint time do not count for tokens/s
            self.train_seconds += paused - step_start
            if self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self.run_eval()
            if self.step % cfg.save_every == 0 or self.step == cfg.max_steps:
                self.save()
            for cb in self.callbacks:
                cb(self, self.step)
            t0 += time.perf_counter() - paused
        bar.close()
        result = self.run_eval()
        if self.export_fn is not None and acc.is_main_process:
            with self.ema_weights() as m:
                self.export_fn(m, self.run_dir / "final")
        acc.wait_for_everyone()
        self.metrics.close()
        return TrainResult(self.step, self.run_dir, last_loss, self.last_checkpoint, result)

    def _log(self, window: dict[str, float], n: int, tokens: int, seconds: float, bar: Any) -> float:
        acc = self.accelerator
        local = torch.tensor([window.get("loss", math.nan) / max(n, 1), float(tokens)], device=acc.device)
        total = acc.reduce(local, "sum")
        loss = float(total[0]) / acc.num_processes
        tokens_all = int(total[1])
        self.tokens_seen += tokens_all
        values = {k: v / max(n, 1) for k, v in window.items()}
        values.update(loss=loss, tokens_per_s=tokens_all / max(seconds, 1e-9),
                      tokens_seen=self.tokens_seen, batches_done=self.batches_done)
        self.metrics.log("train", self.step, values)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{values['lr']:.2e}", tok_s=f"{values['tokens_per_s']:.0f}")
        return loss


def _cpu_only() -> bool:
    """True without CUDA/XPU. accelerate then needs ``cpu=True`` to see a torchrun launch
    (LOCAL_RANK set) as multi-process CPU (gloo) rather than a single process."""
    xpu = getattr(torch, "xpu", None)
    return not torch.cuda.is_available() and not (xpu is not None and xpu.is_available())


def _mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    for key in ("attention_mask", "token_mask"):
        if key in batch:
            return batch[key]
    return torch.ones_like(batch["input_ids"])
