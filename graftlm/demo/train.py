"""Time-boxed training phases on top of `graftlm.training.Trainer`, with a graceful Ctrl-C.

A phase gets a number of seconds. Two measured forward/backward passes give the step time, from
which the planned step count (and so the warm-up + cosine schedule and the progress bar) is set;
at 10/25/50/75 % of the phase's time the plan is re-made from the step rate actually measured
(the cosine then decays over the new count), and the deadline is enforced after every step. Ctrl-C during training finishes the current
step, writes a full checkpoint (weights, optimizer, scheduler, RNG, data position) and raises
KeyboardInterrupt; ``resume=True`` continues from that checkpoint. A second Ctrl-C quits at once.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from graftlm.training.recipes import TrainConfig
from graftlm.training.trainer import Trainer

MAX_PLANNED_STEPS = 100_000


class InterruptGuard:
    """While active (main thread only), the first SIGINT only sets ``requested``."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (press Ctrl-C again to quit at once)…",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _open_bar(name: str) -> Any:
    """The Trainer's open progress bar for phase ``name`` (tqdm keeps a registry of open bars)."""
    for bar in list(getattr(tqdm, "_instances", ())):
        if getattr(bar, "desc", None) == name and not getattr(bar, "disable", False):
            return bar
    return None


class PhaseControl:
    """Trainer callback: on a requested interrupt save and raise; re-plan the step count from the
    step rate actually measured (a machine that got slower or faster than at planning time); past
    the deadline stop. The progress bar ends with why the phase stopped."""

    REPLAN_AT = (0.1, 0.25, 0.5, 0.75)  # fractions of the phase's time
    MIN_CHANGE = 0.1  # re-plan only when the fitting step count differs by more than this fraction

    def __init__(self, deadline: float, guard: InterruptGuard, *, cap: int | None = None) -> None:
        self.deadline = deadline
        self.guard = guard
        self.cap = cap
        self.stopped_by_time = False
        self.plan_at_stop: int | None = None  # the planned steps when the deadline stopped the phase
        self.replans: list[tuple[int, int]] = []  # (at step, new planned steps)
        self._origin: tuple[int, float] | None = None  # (step, time) of the first callback
        self._next = 0

    def __call__(self, trainer: "DemoTrainer", step: int) -> None:
        if self.guard.requested:
            trainer.checkpoint_allowed = True
            trainer.save()
            raise KeyboardInterrupt
        now = time.monotonic()
        if self._origin is None:  # the first step includes warm-up costs: measure from here on
            self._origin = (step, now)
        else:
            t0 = self._origin[1]
            span = max(self.deadline - t0, 1e-9)
            due = self._next < len(self.REPLAN_AT) and now - t0 >= self.REPLAN_AT[self._next] * span
            # a machine faster than planned reaches the planned steps with time to spare
            early = step >= 0.9 * trainer.cfg.max_steps and now - t0 < 0.8 * span and step - self._origin[0] >= 3
            if due or early:
                self._next += int(due)
                self._replan(trainer, step, now)
        if now >= self.deadline and step < trainer.cfg.max_steps:
            self.stopped_by_time = True
            self.plan_at_stop = trainer.cfg.max_steps
            self._bar_reason(trainer, f"stopped: time budget reached ({step} of {trainer.cfg.max_steps} planned steps)")
            trainer.cfg.max_steps = step  # ends Trainer.fit's loop after this step
        elif step >= trainer.cfg.max_steps:
            self._bar_reason(trainer, f"done: all {step} planned steps")

    def _replan(self, trainer: "DemoTrainer", step: int, now: float) -> None:
        s0, t0 = self._origin  # type: ignore[misc]
        if step <= s0:
            return
        rate = (step - s0) / max(now - t0, 1e-9)
        fitting = step + max(1, int((self.deadline - now) * rate * 0.97))
        if self.cap is not None:
            fitting = min(fitting, self.cap)
        planned = trainer.cfg.max_steps
        if abs(fitting - planned) <= self.MIN_CHANGE * planned:
            return
        trainer.cfg.max_steps = fitting
        schedule = getattr(getattr(trainer, "scheduler", None), "lr_lambdas", [None])[0]
        if hasattr(schedule, "cosine_steps") and hasattr(schedule, "warmup_steps"):
            schedule.cosine_steps = max(1, fitting - schedule.warmup_steps)  # decay over the new plan
        self.replans.append((step, fitting))
        bar = _open_bar(getattr(trainer.cfg, "name", None))
        if bar is not None:
            bar.total = fitting
            bar.set_postfix_str(f"re-planned: {fitting} steps fit (was {planned})")

    @staticmethod
    def _bar_reason(trainer: "DemoTrainer", text: str) -> None:
        bar = _open_bar(getattr(trainer.cfg, "name", None))
        if bar is not None:
            bar.set_postfix_str(text, refresh=True)


class DemoTrainer(Trainer):
    """The project's Trainer, checkpointing only when asked (on Ctrl-C): a finished phase is
    exported with save_pretrained, so per-step checkpoints would only cost time and disk."""

    checkpoint_allowed = False

    def save(self) -> Path | None:  # type: ignore[override]
        if not self.checkpoint_allowed:
            return self.last_checkpoint
        return super().save()


@dataclass
class PhaseResult:
    steps: int  # optimizer steps done in total (a resumed phase counts the earlier ones too)
    seconds: float  # wall time of this call
    stopped_by_time: bool
    last_loss: float
    planned_steps: int = 0  # the plan at the end (after any re-planning)
    replans: list = field(default_factory=list)  # (at step, new planned steps)


def autocast(precision: str) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def resolve_precision(precision: str) -> str:
    """``auto`` → bf16 where the CPU computes it natively (avx512_bf16 / AMX), else fp32."""
    if precision != "auto":
        return precision
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "fp32"


def measure_step_seconds(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str) -> float:
    """Seconds of one forward + backward on ``batch`` (the second of two runs); grads are cleared."""
    model.train()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        with autocast(precision):
            loss = model(**batch).loss
        loss.backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return times[-1] * 1.15  # + optimizer step and bookkeeping


def plan_steps(seconds: float, step_seconds: float, cap: int | None) -> int:
    steps = max(1, int(seconds / max(step_seconds, 1e-6)))
    return max(1, min(steps, cap if cap is not None else MAX_PLANNED_STEPS))


def phase_config(name: str, *, kind: str, steps: int, batch_size: int, lr: float, seed: int,
                 run_dir: Path, precision: str, backbone: str | None = None) -> TrainConfig:
    """A TrainConfig for one demo phase: warm-up (≤ 10 % of the steps) then cosine to 10 % of lr,
    no EMA (a few hundred steps are too few for an average to help)."""
    return TrainConfig(
        name=name, model=kind, backbone=backbone, batch_size=batch_size, lr=lr, base_lr=None,
        warmup_steps=max(1, min(30, steps // 10)), warmup_start_factor=0.05, cosine_steps=max(1, steps),
        min_lr_ratio=0.1, max_steps=steps, ema_momentum=None, seed=seed, output_dir=str(run_dir),
        save_every=steps, keep_last=1, log_every=max(1, min(10, steps // 20)), eval_every=steps,
        mixed_precision="bf16" if precision == "bf16" else "no", weight_decay=0.01,
    ).validate()


def run_phase(model: torch.nn.Module, cfg: TrainConfig, make_batches: Callable[[int, int, int], Iterable[dict]],
              *, seconds: float, resume: bool, cap: int | None = None) -> PhaseResult:
    """Train ``model`` with ``cfg`` for at most ``seconds`` (at least one step); the step count
    is re-planned from the measured step rate, never above ``cap``.

    Raises KeyboardInterrupt after saving a checkpoint when the user pressed Ctrl-C."""
    t0 = time.perf_counter()
    with InterruptGuard() as guard:
        control = PhaseControl(time.monotonic() + seconds, guard, cap=cap)
        trainer = DemoTrainer(model, cfg, make_batches, callbacks=[control], run_dir=cfg.output_dir)
        try:
            result = trainer.fit(resume=resume)
        except KeyboardInterrupt as err:
            err.planned_steps = trainer.cfg.max_steps  # type: ignore[attr-defined]  # the plan to resume with
            raise
    shutil.rmtree(Path(cfg.output_dir) / "checkpoints", ignore_errors=True)  # only needed while interrupted
    return PhaseResult(steps=result.step, seconds=time.perf_counter() - t0,
                       stopped_by_time=control.stopped_by_time, last_loss=result.last_loss,
                       planned_steps=int(control.plan_at_stop or max(trainer.cfg.max_steps, result.step)),
                       replans=control.replans)


def cycle_batches(batches: Callable[[int], Iterator[dict]]) -> Callable[[int, int, int], Iterator[dict]]:
    """Adapt ``batches(start)`` to the Trainer's ``make_batches(start, rank, world)`` (one process)."""
    def make(start: int, rank: int, world: int) -> Iterator[dict]:
        if world != 1:
            raise ValueError("the demo trains in one process; run `graftlm train` for multi-process training")
        return batches(start)
    return make
