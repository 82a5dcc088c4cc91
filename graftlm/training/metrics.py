"""Run metrics: one JSON object per line in ``RUN_DIR/metrics.jsonl``, optionally TensorBoard.

Every record has ``step`` and ``kind`` (``train``, ``eval`` or ``event``) plus numbers such as
``loss``, ``lr``, ``tokens_per_s``. TensorBoard is used only when asked for and installed
(imported lazily); otherwise a warning says so and the JSON file is still written.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any
from graftlm.atomic import write_text

METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
    """Appends records to ``RUN_DIR/metrics.jsonl`` (main process only: pass ``enabled=False``
    on the others)."""

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard: true but the tensorboard package is not installed "
                              "(pip install tensorboard); writing metrics.jsonl only", stacklevel=2)
            else:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3), **_jsonable(values)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step`` greater than ``step`` (a resumed run redoes them)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path.parent) if r.get("step", 0) <= step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)  # JSON has no NaN/inf
        out[k] = v
    return out


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a run (lines that are not valid JSON — e.g. a torn last line — are skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"{path} does not exist: is {run_dir} a graftlm run folder?")
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
