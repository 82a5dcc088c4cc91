"""Read the tensors of a PyTorch ``.pth`` file without running any code from it.

A full mmengine training checkpoint pickles Python objects besides its weights (mmengine's
``HistoryBuffer``s in ``message_hub``, numpy arrays, the config), so ``torch.load(weights_only=
True)`` refuses it, and ``weights_only=False`` would execute whatever the file asks for. This
module parses the file itself: the zip archive ``torch.save`` writes, its ``data.pkl`` through an
unpickler whose ``find_class`` knows only tensor rebuilding, ``OrderedDict`` and the storage types;
every other global becomes an inert placeholder (constructible with any arguments, doing nothing),
and only tensors, plain scalars and the dicts / lists holding them are returned. Nothing the file names is
imported or called.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}


class CheckpointReadError(ValueError):
    """The file is not a readable PyTorch zip checkpoint (empty, truncated, text, legacy format…)."""


class _StorageKind:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class Inert:
    """Stands for a global the file names but we refuse to import: takes any arguments and state,
    does nothing. ``_graftlm_global`` says what it replaced."""

    _graftlm_global = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Inert":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "Inert":  # e.g. a placeholder for getattr(...)
        return Inert()

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self._graftlm_global}>"


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor refers to a storage that is not a plain tensor storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source
        self.skipped: set[str] = set()
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageKind(_STORAGE_DTYPES[name])
        self.skipped.add(f"{module}.{name}")
        return type(name, (Inert,), {"_graftlm_global": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageKind)):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel = pid[:5]
        key = str(key)
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError as err:
                raise CheckpointReadError(f"{self.source} is truncated or damaged: storage {key} is missing") from err
            itemsize = torch.empty((), dtype=kind.dtype).element_size()
            if len(raw) < int(numel) * itemsize:
                raise CheckpointReadError(f"{self.source} is truncated or damaged: storage {key} is short")
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
        return self.storages[key]


def _tensors_only(obj: Any) -> Any:
    """Keep tensors, plain scalars / strings, and the dicts (string keys) and lists holding them;
    placeholders and anything else the file pickled are dropped (returned as None)."""
    if isinstance(obj, (torch.Tensor, str, int, float, bool)) and not isinstance(obj, Inert):
        return obj
    if isinstance(obj, dict):
        kept = {k: _tensors_only(v) for k, v in obj.items() if isinstance(k, str)}
        return {k: v for k, v in kept.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [v for v in (_tensors_only(v) for v in obj) if v is not None]
    return None


def read_tensors(path: str | Path) -> tuple[dict[str, Any], set[str]]:
    """(content, skipped): the file's dicts of tensors (and plain scalars), and the names of the globals it pickled
    that were replaced by inert placeholders (never imported). Raises `CheckpointReadError`
    (a ValueError) naming the file for anything that is not a readable ``torch.save`` zip."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise CheckpointReadError(f"no checkpoint file at {source}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointReadError(f"{source} is empty (0 bytes): the download or copy did not finish")
    if not zipfile.is_zipfile(path):
        head = path.read_bytes()[:16]
        hint = ("it looks like a legacy (pre-PyTorch 1.6) torch file: re-save it with a current torch.save"
                if head[:2] == b"\x80\x02" else "it is not a zip archive, or its end is missing (a truncated file)")
        raise CheckpointReadError(f"{source} ({size} bytes, starts {head!r}) is not a PyTorch checkpoint: {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise CheckpointReadError(f"{source} is a zip archive but not a torch.save file (no <name>/data.pkl)")
            prefix = pkl[0].split("/")[0]
            order = f"{prefix}/byteorder"
            if order in archive.namelist() and archive.read(order).strip() != b"little":
                raise CheckpointReadError(f"{source} was saved on a big-endian machine; re-save it on a little-endian one")
            with archive.open(pkl[0]) as f:
                unpickler = _Unpickler(f, archive, prefix, source)
                obj = unpickler.load()
    except CheckpointReadError:
        raise
    except Exception as err:  # any parse failure of a damaged or hostile file: report, never run it
        raise CheckpointReadError(f"{source} is truncated or damaged ({type(err).__name__}: {err})") from err
    kept = _tensors_only(obj)
    if not isinstance(kept, dict):
        kept = {} if kept is None else {"": kept}
    return kept, unpickler.skipped
