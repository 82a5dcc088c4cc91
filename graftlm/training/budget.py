"""``max_minutes``: train for a time budget instead of a guessed step count.

A CPU user knows how many minutes they can spare, not how many steps fit in them. `TimeBudget`
(a `Trainer` callback) measures the step rate on the run's own training time (evaluation and
checkpoints excluded; kept across ``--resume``), re-plans ``max_steps`` and the cosine decay so
the schedule ends when the budget does, and stops the run there with a checkpoint (a later
``--resume`` with a larger ``max_minutes`` goes on from it). ``max_steps`` stays a cap.
"""

from __future__ import annotations

from typing import Any

REPLAN_AT = (0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)  # fractions of the budget
MIN_STEPS_TO_MEASURE = 5  # the first steps include warm-up costs (allocations, caches)


class TimeBudget:
    """Callback ``(trainer, step)``: fit the run into ``minutes`` of training time."""

    def __init__(self, minutes: float) -> None:
        if not minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {minutes}")
        self.budget_s = float(minutes) * 60.0
        self.cap: int | None = None
        self.replans: list[tuple[int, int]] = []  # (at step, planned steps)
        self._origin: tuple[int, float] | None = None
        self._next = 0

    def __call__(self, trainer: Any, step: int) -> None:
        spent = float(trainer.train_seconds)
        if self.cap is None:
            self.cap = int(trainer.cfg.max_steps)
        if self._origin is None:
            self._origin = (step, spent)
            while self._next < len(REPLAN_AT) and spent >= REPLAN_AT[self._next] * self.budget_s:
                self._next += 1  # a resumed run: the fractions already passed
        if spent >= self.budget_s:
            trainer.cfg.max_steps = step  # Trainer.fit's loop ends after this step
            last = getattr(trainer, "last_checkpoint", None)
            if hasattr(trainer, "save") and (last is None or not str(last).endswith(f"step-{step:08d}")):
                trainer.save()  # the stop is a checkpoint too: a later --resume with more minutes goes on from here
            return
        due = self._next < len(REPLAN_AT) and spent >= REPLAN_AT[self._next] * self.budget_s
        if due and step - self._origin[0] >= MIN_STEPS_TO_MEASURE:
            while self._next < len(REPLAN_AT) and spent >= REPLAN_AT[self._next] * self.budget_s:
                self._next += 1
            self._replan(trainer, step, spent)

    def _replan(self, trainer: Any, step: int, spent: float) -> None:
        s0, t0 = self._origin  # type: ignore[misc]
        rate = (step - s0) / max(spent - t0, 1e-9)
        planned = min(self.cap, step + max(1, int((self.budget_s - spent) * rate)))
        trainer.cfg.max_steps = planned
        schedule = trainer.scheduler.lr_lambdas[0]
        if hasattr(schedule, "cosine_steps"):
            schedule.cosine_steps = max(1, planned - schedule.warmup_steps)  # decay over the new plan
        self.replans.append((step, planned))
