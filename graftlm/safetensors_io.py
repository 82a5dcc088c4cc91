"""Reading checkpoint files safely: safetensors (never pickle) and weights-only torch files, with
errors that name the file and the problem instead of a bare deserializer message."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

_PICKLE_PROTOCOLS = range(2, 6)  # b"\x80" followed by the protocol number
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format (a pickle inside)


def _looks_pickled(head: bytes) -> bool:
    return head.startswith(_ZIP_MAGIC) or (len(head) > 1 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS)


def check_safetensors_file(path: str | Path, what: str = "weights") -> Path:
    """Cheap checks before the safetensors parser sees ``path``: exists, not empty, not a pickle or
    torch.save archive, header fits in the file. Returns the path; raises with the file named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({what}); expected a .safetensors file written by graftlm")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes): the {what} file was not written completely; re-save it")
    with open(path, "rb") as f:
        head = f.read(8)
    if _looks_pickled(head):
        raise ValueError(
            f"{path} is a pickle / torch.save file, not safetensors: graftlm never unpickles {what} (that can run "
            "arbitrary code). Convert it in a trusted environment: safetensors.torch.save_file(torch.load(path), ...)"
        )
    header = int.from_bytes(head, "little") if len(head) == 8 else None
    if header is None or header > size - 8:
        raise ValueError(
            f"{path} is truncated or not a safetensors file: its header claims {header} bytes but the file has "
            f"{size}; the {what} file is damaged — re-save it (or use an earlier checkpoint)"
        )
    return path


def read_safetensors(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on CPU; ValueError naming ``path`` if it is damaged."""
    path = check_safetensors_file(path, what)
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError has no stable import path across versions
        raise ValueError(
            f"{path} is not a valid safetensors file ({type(err).__name__}: {err}); the {what} file is corrupt "
            "or truncated — re-save it (or use an earlier checkpoint)"
        ) from err


def read_torch_weights(path: str | Path, what: str = "state") -> object:
    """``torch.load(weights_only=True)`` (no code runs) with errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({what})")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): the {what} file was not written completely")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds Python objects that a weights-only load refuses to run ({what}); graftlm never "
            "unpickles untrusted files"
        ) from err
    except Exception as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); the {what} file is damaged") from err


def fit_problems(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor], *,
                 optional: Callable[[str], bool] = lambda key: False, theirs: str = "checkpoint",
                 ours: str = "model", limit: int | None = None) -> list[str]:
    """What keeps ``state`` from fitting ``expected`` (key -> shape): ``"missing keys: …"``,
    ``"unexpected keys: …"`` and ``"wrong shapes: …"`` parts (empty when it fits). A missing key for
    which ``optional(key)`` is True is not reported; ``limit`` caps the keys named per part."""
    missing = sorted(k for k in expected if k not in state and not optional(k))
    unexpected = sorted(k for k in state if k not in expected)
    shapes = [f"{k}: {theirs} {tuple(state[k].shape)} vs {ours} {tuple(expected[k])}"
              for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != tuple(expected[k])]
    parts = [("missing keys", ", ", missing), ("unexpected keys", ", ", unexpected), ("wrong shapes", "; ", shapes)]
    return [f"{name}: {sep.join(keys[:limit])}" for name, sep, keys in parts if keys]
