"""The demo's run folder: layout, ``state.json`` (written after every phase) and the data split.

Layout of ``RUN/``::

    state.json        settings, which phases are done (with their results and timings), budgets
    metrics.jsonl     one record per finished phase (its results and seconds)
    report.md         what was trained, for how long, on what, and the measured numbers
    svae-loss.png, sllm-loss.png   loss curves of the two training phases
    data/             train.jsonl, heldout.jsonl: the exact paragraphs used (``{"text": ...}``)
    tokenizer/        the backbone's tokenizer (save_pretrained)
    svae/             SentenceVAE phase: trainer metrics.jsonl, recipe.yaml, vae/ (SentenceVAE.from_pretrained
                      reads it; the frozen embedding is in vae/shared.safetensors, see graftlm.demo.storage),
                      checkpoints/ only while the phase is interrupted
    sllm/             SentenceLLM phase: same, model/ (graftlm.load reads it; model/vae/shared.safetensors
                      is a hard link to svae/vae/shared.safetensors)

`demo_sub_runs(RUN)` gives the training runs inside (for `graftlm plot` / `graftlm eval`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from graftlm.atomic import write_text

STATE_FILE = "state.json"
FORMAT = "graftlm-demo-run"
PHASES = ("setup", "svae", "svae_eval", "sllm", "generate", "measure", "report")


class RunFolder:
    """A demo run folder; ``state`` is the parsed ``state.json``."""

    def __init__(self, path: str | os.PathLike, state: dict[str, Any]) -> None:
        self.path = Path(path)
        self.state = state

    # -- paths ------------------------------------------------------------------------------------
    @property
    def svae_dir(self) -> Path:
        return self.path / "svae"

    @property
    def vae_dir(self) -> Path:
        return self.path / "svae" / "vae"

    @property
    def sllm_dir(self) -> Path:
        return self.path / "sllm"

    @property
    def sllm_model_dir(self) -> Path:
        return self.path / "sllm" / "model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    # -- creation / opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, settings: dict[str, Any]) -> "RunFolder":
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"--out {str(path)!r} already exists and is not empty; pick another folder, "
                             f"or continue that run with: graftlm demo --resume {path}")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, {"format": FORMAT, "version": 1, "settings": settings, "phases": {},
                         "created": time.strftime("%Y-%m-%d %H:%M:%S"), "elapsed": 0.0, "sessions": 0})
        run.save()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        path = Path(path)
        file = path / STATE_FILE
        if not path.exists():
            raise ValueError(f"the run folder {str(path)!r} does not exist; pass the folder `graftlm demo` printed "
                             "(default runs/demo-<timestamp>)")
        if not file.is_file():
            raise ValueError(f"{str(path)!r} is not a graftlm demo run folder (no {STATE_FILE}); "
                             "pass the folder `graftlm demo` printed (default runs/demo-<timestamp>)")
        try:
            state = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is damaged ({err}); start a new run with `graftlm demo`") from err
        if state.get("format") != FORMAT:
            raise ValueError(f"{file} is not a graftlm demo state file")
        return cls(path, state)

    def save(self) -> None:
        """Write ``state.json`` atomically (temp file + rename)."""
        write_text(self.path / STATE_FILE, json.dumps(self.state, indent=1, default=str))

    # -- phases -----------------------------------------------------------------------------------
    def done(self, phase: str) -> bool:
        return bool(self.state["phases"].get(phase, {}).get("done"))

    def result(self, phase: str) -> dict[str, Any]:
        return self.state["phases"].get(phase, {})

    def update(self, phase: str, *, done: bool, **info: Any) -> None:
        record = self.state["phases"].setdefault(phase, {})
        record.update(info, done=done)
        self.save()
        if done:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"kind": "demo", "phase": phase, "time": round(time.time(), 3),
                                    **_scalars(record)}, default=str) + "\n")

    @property
    def complete(self) -> bool:
        return all(self.done(p) for p in PHASES)

    def require_trained(self, what: str) -> None:
        """Raise a clear ValueError unless the phase producing ``what`` ("svae" or "sllm") is done."""
        if not self.done(what):
            name = "SentenceVAE" if what == "svae" else "SentenceLLM"
            raise ValueError(f"the run {str(self.path)!r} has no trained {name} yet; finish it first with "
                             f"`graftlm demo --resume {self.path}`")

    # -- data split -------------------------------------------------------------------------------
    def write_split(self, train: list[str], heldout: list[str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for name, docs in (("train", train), ("heldout", heldout)):
            with open(self.data_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)

    def read_split(self) -> tuple[list[str], list[str]]:
        out = []
        for name in ("train", "heldout"):
            lines = (self.data_dir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            out.append([json.loads(line)["text"] for line in lines if line.strip()])
        return out[0], out[1]


def is_demo_run(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by `graftlm demo` (it has a demo ``state.json``)."""
    try:
        return json.loads((Path(path) / STATE_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def demo_sub_runs(path: str | os.PathLike, *, finished_only: bool = True) -> dict[str, Path]:
    """The training runs inside a demo run folder: ``{"svae": RUN/svae, "sllm": RUN/sllm}``, each
    a training run folder (metrics.jsonl, recipe.yaml) with its model in ``RUN/svae/vae``
    (`SentenceVAE.from_pretrained`) and ``RUN/sllm/model`` (`graftlm.load`). Only the phases that
    finished, unless ``finished_only=False`` (then every part that has a metrics.jsonl).
    ValueError when ``path`` is not a demo run folder."""
    run = RunFolder.open(path)
    parts = {"svae": run.svae_dir, "sllm": run.sllm_dir}
    if finished_only:
        return {k: v for k, v in parts.items() if run.done(k)}
    return {k: v for k, v in parts.items() if (v / "metrics.jsonl").is_file()}


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool)) or v is None}
