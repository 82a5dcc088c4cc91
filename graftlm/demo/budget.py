"""The demo's time budget: how much of it each phase gets, and what each phase actually cost.

After setup (loading + data preparation, whatever they take), every phase gets, when it starts,
its weight's share of the time still left, divided among the phases still to run: a phase that
overran shrinks the ones after it, one that ended early leaves them more. Each phase enforces
its share as a deadline (training re-plans its steps from the measured step rate and stops on
time; evaluation, generation and measurement stop early, after at least one unit of work).

Every phase's wall time is recorded with the process CPU time beside it and the 1-minute load
average at its end: CPU time well below wall × threads, or a load above the CPU count, means
other programs took the CPUs and the timings are not this machine's real speed.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

# shares of the time left after setup; the training phases also cover building, saving and plotting
PHASE_WEIGHTS = {"svae": 0.48, "svae_eval": 0.05, "sllm": 0.32, "generate": 0.04, "measure": 0.09, "report": 0.02}
MIN_MINUTES = 1.0  # below this, loading and measuring alone do not fit
MEANINGFUL_STEPS = {"svae": 100, "sllm": 50}  # fewer steps than this learn next to nothing
BUSY_UTILISATION = 0.6  # CPU time / (wall × threads) below this: the process did not get its CPUs
BUSY_EXTRA_LOAD = 0.5  # load average above CPU count + this: other programs were running


def share(phase: str, remaining_s: float, phases_left: list[str]) -> float:
    """Seconds for ``phase`` out of ``remaining_s`` shared by ``phases_left`` (which include it)."""
    total = sum(PHASE_WEIGHTS[p] for p in phases_left if p in PHASE_WEIGHTS)
    if phase not in PHASE_WEIGHTS or total <= 0:
        return max(remaining_s, 0.0)
    return max(remaining_s, 0.0) * PHASE_WEIGHTS[phase] / total


def smallest_meaningful_minutes(phase: str, *, step_s: float, minutes: float, fitting_steps: int) -> float:
    """The ``--minutes`` at which ``phase`` would fit MEANINGFUL_STEPS steps on this machine: the
    current budget plus the missing steps' time divided by the phase's share of the budget."""
    missing = max(MEANINGFUL_STEPS[phase] - fitting_steps, 0) * step_s
    return minutes + missing / PHASE_WEIGHTS[phase] / 60.0


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on every platform
        return None


@dataclass
class PhaseClock:
    """Wall and process CPU time of one phase, with the load average when it ended."""

    threads: int
    wall0: float = 0.0
    cpu0: float = 0.0

    def __enter__(self) -> "PhaseClock":
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def record(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall0
        cpu = time.process_time() - self.cpu0
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "threads": self.threads,
                "cpu_utilisation": round(cpu / max(wall * self.threads, 1e-9), 3), "load_avg_1min": load_average(),
                "cpus": os.cpu_count()}


def busy_warning(timing: dict[str, Any] | None, what: str) -> str | None:
    """A one-line warning when ``timing`` (a PhaseClock record) shows a busy machine, else None."""
    if not timing:
        return None
    reasons = []
    util, load, cpus = timing.get("cpu_utilisation"), timing.get("load_avg_1min"), timing.get("cpus") or 1
    if isinstance(util, (int, float)) and util < BUSY_UTILISATION and timing.get("wall_s", 0) >= 1.0:
        reasons.append(f"the process got {100 * util:.0f} % of the CPU time its {timing.get('threads')} "
                       f"thread(s) could use")
    if isinstance(load, (int, float)) and load > cpus + BUSY_EXTRA_LOAD:
        reasons.append(f"load average {load:.1f} on {cpus} CPU(s)")
    if not reasons:
        return None
    return (f"warning: the machine was busy during {what} ({'; '.join(reasons)}): its timings are slower and "
            "noisier than this machine's real speed; rerun on an idle machine to compare speeds")


def time_limit(fn: Callable[..., Any], deadline: float) -> dict[str, float]:
    """The keyword that tells ``fn`` when to stop, if it takes one: ``deadline`` (a
    time.monotonic() value) or ``budget_s`` (seconds from now)."""
    params = inspect.signature(fn).parameters
    if "deadline" in params:
        return {"deadline": deadline}
    if "budget_s" in params:
        return {"budget_s": max(deadline - time.monotonic(), 0.0)}
    return {}
