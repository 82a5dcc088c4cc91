"""Atomic, resumable checkpoints through accelerate's ``save_state`` / ``load_state``.

Layout of ``RUN_DIR/checkpoints/step-00001234/``::

    accelerate/              Accelerator.save_state: model, optimizer, lr scheduler, every process's
                             RNG state (DDP, FSDP and DeepSpeed each write their own form: sharded
                             or gathered, as the accelerate config says)
    model.safetensors        the full (gathered) weights, for `graftlm eval` and for people
    ema.safetensors          the EMA weights (if EMA is on)
    trainer_state.json       step, data position, tokens seen, the recipe; written last

Every process writes into the temporary folder ``.tmp-step-…-writing`` (`graftlm.atomic`), which
the main process renames into place once every file is on disk, so a process killed mid-write
leaves a temp folder that is ignored (and removed by the next save), never a half checkpoint.
Reading checks every file (safetensors integrity, weights-only torch files, JSON) *before* anything
is applied, so a damaged checkpoint raises `DamagedCheckpoint` naming the file and leaves the model
untouched; the trainer then falls back to the previous complete one. Multi-node runs need
``RUN_DIR`` on a shared file system, as with accelerate itself.

Checkpoints written before accelerate's format (``optimizer.pt`` / ``scheduler.pt`` /
``rng-rank*.json`` beside the weights) cannot be resumed: `read` says so (their
``model.safetensors`` still serves `graftlm eval`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import load
from safetensors.torch import save_file

from graftlm.atomic import begin_folder, commit_folder, temp_folder_for, write_json
from graftlm.safetensors_io import check_safetensors_file, fit_problems, read_safetensors

_NAME = re.compile(r"^step-(\d{8,})$")
STATE_FILE = "trainer_state.json"
STATE_DIR = "accelerate"
WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"
_WRITING = "writing"  # tag of the temporary folder every process agrees on


class DamagedCheckpoint(ValueError):
    """A checkpoint file is missing, truncated or corrupt (the message names it)."""


class OldCheckpoint(ValueError):
    """A checkpoint in the layout before accelerate's save_state: it cannot be resumed."""


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:08d}"


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


def temp_dir_for(run_dir: str | os.PathLike, step: int) -> Path:
    """The temporary folder of the checkpoint of ``step`` (the same name on every process)."""
    return temp_folder_for(step_dir(run_dir, step), _WRITING)


def begin(run_dir: str | os.PathLike, step: int) -> Path:
    """Create (fresh) the temp folder of the checkpoint of ``step``; main process only."""
    return begin_folder(step_dir(run_dir, step), _WRITING)


def finish(run_dir: str | os.PathLike, tmp: Path, step: int, *, weights: dict[str, torch.Tensor] | None,
           ema_state: dict[str, torch.Tensor] | None, trainer_state: dict[str, Any], keep_last: int | None) -> Path:
    """Main process, after every process's ``save_state`` into ``tmp / STATE_DIR``: add the
    user-facing files, rename ``tmp`` into place, prune old checkpoints.

    ``weights``: the full state dict, or None to reuse accelerate's own ``model.safetensors``
    (a hard link: the same bytes are not written twice)."""
    own = tmp / STATE_DIR / WEIGHTS
    if weights is None and own.is_file():
        try:
            os.link(own, tmp / WEIGHTS)
        except OSError:
            shutil.copyfile(own, tmp / WEIGHTS)
    else:
        if weights is None:
            raise ValueError(f"accelerate wrote no {WEIGHTS} into {tmp / STATE_DIR}: pass the gathered weights")
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
    if ema_state is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / EMA_WEIGHTS))
    write_json(tmp / STATE_FILE, trainer_state, indent=1)
    final = commit_folder(tmp, step_dir(run_dir, step))  # re-saving the same step (after a resume) replaces it
    if keep_last:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoint_dir(run_dir).glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _check_state_files(folder: Path) -> None:
    """Every file accelerate wrote is readable: safetensors headers fit, torch files load weights-only."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is missing")
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".safetensors":
            check_safetensors_file(f, "checkpoint state")
        elif f.suffix in (".bin", ".pkl", ".pt"):
            _weights_only(f)


def _weights_only(path: Path) -> None:
    """Load ``path`` the way ``load_state`` will: weights-only (tensors, plus the numpy arrays of RNG
    states, which accelerate allows); no code runs. ValueError naming the file otherwise."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): the checkpoint state was not written completely")
    try:
        load(path, map_location="cpu")
    except Exception as err:
        raise ValueError(f"{path} cannot be read weights-only ({type(err).__name__}: {err}); the checkpoint state "
                         "is damaged, or holds objects graftlm does not unpickle") from err


def read(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint without applying anything: ``trainer_state`` plus the ``model``
    and ``ema`` weights; accelerate's files are checked. Raises `DamagedCheckpoint` naming the first
    bad file, `OldCheckpoint` for the layout before accelerate's."""
    path = Path(path)
    if not (path / STATE_DIR).exists() and (path / "optimizer.pt").is_file():
        raise OldCheckpoint(
            f"{path} was written by an older graftlm (optimizer.pt / scheduler.pt / rng-rank*.json layout), which "
            f"cannot be resumed by this version: start a new run (another name or output_dir); its {WEIGHTS} can "
            "still be evaluated with `graftlm eval` or used as vae_path")
    try:
        state = _read_json(path / STATE_FILE)
        if not isinstance(state, dict) or not {"step", "batches_done"} <= set(state):
            raise ValueError(f"{path / STATE_FILE} lacks step / batches_done")
        state["model"] = read_safetensors(path / WEIGHTS, "checkpoint weights")
        ema = path / EMA_WEIGHTS
        state["ema"] = read_safetensors(ema, "checkpoint EMA weights") if ema.is_file() else None
        _check_state_files(path / STATE_DIR)
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
