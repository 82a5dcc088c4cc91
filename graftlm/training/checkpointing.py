"""Atomic, resumable checkpoints.

Layout of ``RUN_DIR/checkpoints/step-00001234/``::

    model.safetensors        the (unwrapped) model's weights
    ema.safetensors          the EMA weights (if EMA is on)
    optimizer.pt, scheduler.pt   torch.save'd state dicts (loaded with weights_only=True)
    rng-rank{r}.json         python / numpy / torch RNG state of every process
    trainer_state.json       step, data position, tokens seen, the recipe; written last

A checkpoint is written into ``.tmp-step-…`` and renamed with ``os.replace`` once every file is
on disk, so a process killed mid-write leaves a temp folder that is ignored (and removed by the
next save), never a half checkpoint. Loading reads and checks every file (safetensors integrity,
weights-only torch files, JSON) *before* anything is applied, so a damaged checkpoint raises
`DamagedCheckpoint` naming the file and leaves the model untouched; the trainer then falls back
to the previous complete one. Multi-node runs need ``RUN_DIR`` on a shared file system
(each rank writes its own RNG file), as with ``accelerate``'s own ``save_state``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file, save_model

from graftlm.safetensors_io import fit_problems, read_safetensors, read_torch_weights

_NAME = re.compile(r"^step-(\d{8,})$")
STATE_FILE = "trainer_state.json"


class DamagedCheckpoint(ValueError):
    """A checkpoint file is missing, truncated or corrupt (the message names it)."""


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders and folders without
    ``trainer_state.json`` are skipped)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-friendly values."""
    state: dict[str, Any] = {"python": _to_json(random.getstate()),
                             "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_from_json(state["python"]))
    raw = base64.b64decode(state["torch"])
    torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        states = [torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _to_json(x: Any) -> Any:
    return [_to_json(v) for v in x] if isinstance(x, (tuple, list)) else x


def _from_json(x: Any) -> Any:
    return tuple(_from_json(v) for v in x) if isinstance(x, list) else x


def temp_dir_for(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(run_dir) / f".tmp-step-{step:08d}"


def begin(run_dir: str | os.PathLike, step: int) -> Path:
    """Create (fresh) the temp folder of the checkpoint of ``step``; main process only."""
    tmp = temp_dir_for(run_dir, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def write_rng(tmp: Path, rank: int) -> None:
    _write_json(tmp / f"rng-rank{rank}.json", rng_state())


def finish(run_dir: str | os.PathLike, tmp: Path, step: int, *, model: torch.nn.Module,
           ema_state: dict[str, torch.Tensor] | None, optimizer_state: dict, scheduler_state: dict,
           trainer_state: dict[str, Any], keep_last: int | None) -> Path:
    """Write the remaining files into ``tmp``, rename it into place, prune old checkpoints."""
    save_model(model, str(tmp / "model.safetensors"))
    if ema_state is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(scheduler_state, tmp / "scheduler.pt")
    _write_json(tmp / STATE_FILE, trainer_state)
    final = checkpoint_dir(run_dir) / f"step-{step:08d}"
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if keep_last:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoint_dir(run_dir).glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def read(path: Path, *, rank: int = 0) -> dict[str, Any]:
    """Read and check every file of a checkpoint without applying anything: ``trainer_state`` plus
    ``model`` / ``ema`` / ``optimizer`` / ``scheduler`` states and this rank's ``rng`` (or None).
    Raises `DamagedCheckpoint` naming the first bad file."""
    path = Path(path)
    try:
        state = _read_json(path / STATE_FILE)
        if not isinstance(state, dict) or not {"step", "batches_done"} <= set(state):
            raise ValueError(f"{path / STATE_FILE} lacks step / batches_done")
        state["model"] = read_safetensors(path / "model.safetensors", "checkpoint weights")
        ema = path / "ema.safetensors"
        state["ema"] = read_safetensors(ema, "checkpoint EMA weights") if ema.is_file() else None
        state["optimizer"] = read_torch_weights(path / "optimizer.pt", "optimizer state")
        state["scheduler"] = read_torch_weights(path / "scheduler.pt", "scheduler state")
        rng = path / f"rng-rank{rank}.json"
        state["rng"] = _read_json(rng) if rng.is_file() else None
    except DamagedCheckpoint:
        raise
    except (ValueError, OSError) as err:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {err}") from err
    return state


def check_fits(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """ValueError naming the keys when ``weights`` do not fit ``model`` (a tied tensor saved once counts)."""
    expected = model.state_dict()
    by_storage: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        by_storage.setdefault(tensor.data_ptr(), []).append(name)

    def saved_as_a_tied_copy(key: str) -> bool:
        return any(other in weights for other in by_storage[expected[key].data_ptr()])

    shapes = {k: tuple(v.shape) for k, v in expected.items()}
    parts = fit_problems(shapes, weights, optional=saved_as_a_tied_copy, limit=5)
    if not strict:  # only the shapes must agree
        parts = [p for p in parts if p.startswith("wrong shapes")]
    if parts:
        raise ValueError(f"{source} does not fit the model: " + " | ".join(parts))


def apply(state: dict[str, Any], *, model: torch.nn.Module, source: str, strict: bool = True) -> None:
    """Load a `read` checkpoint's weights into ``model`` (checked first) and set this rank's RNG."""
    check_fits(model, state["model"], source, strict)
    model.load_state_dict(state["model"], strict=False)  # checked above, tied copies included
    if state.get("rng") is not None:
        set_rng_state(state["rng"])


def load(path: Path, *, model: torch.nn.Module, rank: int, strict: bool = True) -> dict[str, Any]:
    """`read` + `apply`: load weights into ``model`` and this rank's RNG; return ``trainer_state``
    plus the ``ema``, ``optimizer`` and ``scheduler`` states (the caller applies them)."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"{path} is not a complete graftlm checkpoint (no {STATE_FILE})")
    state = read(path, rank=rank)
    apply(state, model=model, source=str(path / "model.safetensors"), strict=strict)
    return state


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``damaged-step-…`` (kept for inspection, ignored by resume and
    by keep_last pruning, so it can never displace a good checkpoint)."""
    target = path.with_name("damaged-" + path.name)
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
